"""Dropping clients that do not read what they are sent (SLOW_READER_BYTES).

Daphne never makes an application wait for a slow client: every frame is written to the
connection's buffer at once, and a client that stops reading (a suspended laptop, a stalled
proxy, a hostile script) makes the buffer, and the process, grow for as long as replies stream
to it. This middleware looks at that buffer after each send. Past the bound, a WebSocket is
closed with 1013 ("try again later": the page reconnects and resumes from `ready`), and an HTTP
stream is ended and its connection aborted; the application hears a disconnect, so its
consumer or event stream unsubscribes like any other that left.

The buffer is Twisted's, reached through the `send` callable daphne gives an application
(`partial(server.handle_reply, protocol)`). Under any other server there is nothing to look
at, and the middleware passes everything through untouched.
"""

import asyncio
from typing import Any

from django.conf import settings

from chat import metrics
from chat.frames import CLOSE_TOO_SLOW


def unsent_bytes(transport: Any) -> int:
    """Bytes a Twisted transport holds that the peer has not taken yet."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def connection_of(send: Any) -> tuple[Any, Any] | None:
    """Daphne's protocol object and Twisted transport behind `send`, or None under another
    server."""
    protocol = (getattr(send, "args", None) or (None,))[0]
    for holder in (protocol, getattr(protocol, "channel", None)):
        transport = getattr(holder, "transport", None)
        if hasattr(transport, "_tempDataLen") and hasattr(transport, "dataBuffer"):
            return protocol, transport
    return None


def close_too_slow(protocol: Any) -> None:
    """Close a daphne WebSocket with 1013. Autobahn's public `sendClose` takes only 1000 and
    3000-4999 from an application, though RFC 6455 registers 1013 ("try again later") for a
    server to send; its `sendCloseFrame` sends it, with the same closing handshake and
    timeout."""
    protocol.sendCloseFrame(code=CLOSE_TOO_SLOW, reasonUtf8=b"reader too slow", isReply=False)


class DropSlowReaders:
    """ASGI middleware: a WebSocket or event stream that leaves more than SLOW_READER_BYTES
    unread is dropped (module doc).

    What counts is what is still unread when the next message is sent, and the bound grows
    to twice the largest message sent on the connection: one large message (a long reply's
    `ready` on a slow link) is not slowness, and must not drop a client that would only
    reconnect and get it again. Plain HTTP responses (pages, exports, static files) are left
    alone: they end by themselves.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        bound = settings.SLOW_READER_BYTES
        connection = connection_of(send) if scope["type"] in ("http", "websocket") else None
        inbox = getattr(receive, "__self__", None)  # daphne's: the connection's queue.get
        if bound <= 0 or connection is None or not isinstance(inbox, asyncio.Queue):
            await self.app(scope, receive, send)
            return
        protocol, transport = connection
        websocket = scope["type"] == "websocket"
        watched = websocket  # an HTTP response is watched once it turns out to be a stream
        largest = 0
        dropped = False

        async def checked_send(message: dict[str, Any]) -> None:
            nonlocal watched, largest
            if dropped:
                return  # the client is being dropped: nothing more is queued for it
            kind = message["type"]
            if kind == "http.response.start":
                watched = _is_event_stream(message)
            elif watched and kind in ("websocket.send", "http.response.body"):
                if unsent_bytes(transport) > max(bound, 2 * largest):
                    drop()
                    return
                largest = max(largest, _size(message))
            await send(message)

        def drop() -> None:
            # The application hears the disconnect through daphne's own queue, at once (not
            # when the client completes a close it may never read): receive passes through
            # untouched, so an idle socket keeps no task and no frame of this layer waiting
            # beside its own receive.
            nonlocal dropped
            dropped = True
            metrics.SLOW_READERS.labels("websocket" if websocket else "sse").inc()
            if websocket:
                close_too_slow(protocol)
                inbox.put_nowait({"type": "websocket.disconnect", "code": CLOSE_TOO_SLOW})
            else:
                inbox.put_nowait({"type": "http.disconnect"})
                transport.abortConnection()

        await self.app(scope, receive, checked_send)


def _is_event_stream(start: dict[str, Any]) -> bool:
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            return value.startswith(b"text/event-stream")
    return False


def _size(message: dict[str, Any]) -> int:
    payload = message.get("text") or message.get("bytes") or message.get("body") or b""
    return len(payload)
