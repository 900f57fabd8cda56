"""The product's two HTTP reply paths, as a benchmark client asks and reads them.

- ``sse``: ``POST /api/stream/message`` ``{"message": ...}``, answered with the product's own
  frames as server-sent events;
- ``chatkit``: ``POST /api/chatkit`` with a ``threads.create`` request built with the
  ``openai-chatkit`` package's types (tests/chatkit_client.py), answered with ChatKit events.

Both make a new thread for each reply. bench/chatkit.py (the standalone comparison) and
bench/scale.py (its ``sse`` and ``chatkit`` scenarios) read them through this one module, so
the two benchmarks ask the same thing and read the same way: a reader turns one ``data:``
event into an ``Event`` (text added, the reply's message id, its end), and raises on an error
event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests import chatkit_client as ck


@dataclass(frozen=True)
class Event:
    """What one event says of the reply: text it adds, its message, its end status."""

    text: str = ""
    message_id: str = ""
    end: str = ""  # "" until the reply's last event: then its status ("complete", ...)


NOTHING = Event()


def sse_event(event: dict[str, Any]) -> Event:
    """A frame of ``/api/stream/message``: `token` adds text, the reply's `complete` ends it."""
    kind = event.get("type")
    message_id = event.get("message_id", "")
    if kind == "token":
        return Event(event["token"], message_id)
    if kind == "complete" and message_id:
        return Event("", message_id, event.get("status") or "complete")
    if kind == "error":
        raise RuntimeError(f"error frame {event.get('code')}: {event.get('message')}")
    return Event("", message_id) if message_id else NOTHING


def chatkit_event(event: dict[str, Any]) -> Event:
    """A ChatKit event: a text delta adds text (its item is the reply's message), the
    assistant item done ends the reply."""
    kind = event.get("type")
    if kind == "thread.item.updated":
        update = event.get("update") or {}
        if update.get("type", "").endswith("text_delta"):
            return Event(update["delta"], event.get("item_id", ""))
        return NOTHING
    if kind == "thread.item.done":
        item = event.get("item") or {}
        if item.get("type") == "assistant_message":
            return Event("", item.get("id", ""), "complete")
        return NOTHING
    if kind == "error":
        raise RuntimeError(f"error event {event.get('code')}: {event.get('message')}")
    return NOTHING


@dataclass(frozen=True)
class HttpPath:
    """One path: where to POST, the body asking for a reply to ``prompt``, its event reader."""

    name: str
    url: str
    body: Callable[[str], bytes]
    read: Callable[[dict[str, Any]], Event]


PATHS = {
    "sse": HttpPath(
        "sse",
        "/api/stream/message",
        lambda prompt: json.dumps({"message": prompt}).encode(),
        sse_event,
    ),
    "chatkit": HttpPath(
        "chatkit",
        "/api/chatkit",
        lambda prompt: ck.create(prompt).model_dump_json().encode(),
        chatkit_event,
    ),
}
