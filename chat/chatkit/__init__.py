"""ChatKit on Django: the ChatKit server protocol (`POST /api/chatkit`, docs/chatkit.md) through
the `openai-chatkit` package, backed by our own threads, messages and generation engine.

- `items.py`: our messages as ChatKit thread items, and ChatKit input as our text.
- `store.py`: the package's `Store` on our models; ids are our UUIDs.
- `server.py`: the package's `ChatKitServer`, whose replies are the engine's replies.
"""
