"""ASGI: an upload past MAX_UPLOAD_BYTES is refused before Django reads its body.

Django's ASGI handler reads a request's whole body (spooling it to a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any view runs, so a view's check comes after the bytes are
on disk. This sits in front: `POST /api/attachments/` (or ChatKit's upload of an announced
attachment) whose `Content-Length` says more than the limit (plus room for the multipart
framing) is answered 413 `too_large` at once, its body never read; one without a length
(chunked) is counted as it arrives and cut off the same way.
"""

import json
import re
from typing import Any

from django.conf import settings

from chat import frames, metrics

UPLOAD_PATH = "/api/attachments/"
# ChatKit's two-phase upload of an announced attachment (chat/chatkit/attachments.py).
CHATKIT_UPLOAD = re.compile(r"/api/chatkit/attachments/[^/]+/upload")
# The multipart framing around the file: boundaries, headers, the file name.
FRAMING_BYTES = 64 * 1024


def _limit() -> int:
    return settings.MAX_UPLOAD_BYTES + FRAMING_BYTES


async def _refuse(send: Any) -> None:
    metrics.refused("too_large")
    limit = settings.MAX_UPLOAD_BYTES
    frame = frames.error(
        code="too_large", message=f"The file is over {limit:,} bytes.", recoverable=False
    )
    body = json.dumps(frame).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_upload(path: str) -> bool:
    return path == UPLOAD_PATH or CHATKIT_UPLOAD.fullmatch(path) is not None


class TooLarge(Exception):
    """The body grew past the limit while it was read."""


class UploadLimit:
    """Refuse an attachment upload over MAX_UPLOAD_BYTES before its body is stored."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_upload(scope["path"]):
            return await self.inner(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = _limit() + 1
            if declared > _limit():
                return await _refuse(send)
            return await self.inner(scope, receive, send)
        return await self._counted(scope, receive, send)

    async def _counted(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """A body of no declared length: cut off once it passes the limit."""
        seen = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > _limit():
                    raise TooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            return await self.inner(scope, counting_receive, tracking_send)
        except TooLarge:
            if not started:
                await _refuse(send)
