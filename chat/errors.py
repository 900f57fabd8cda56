"""The one way anything tells a client it went wrong (docs/protocol.md, "Errors").

`ChatError` carries the protocol's error `code`, whether a retry may help (`recoverable`, by
default the code's own, frames.ERRORS) and its HTTP status; `.frame()` and `.response()` turn
it into an `error` frame or a JSON answer, whichever the transport needs. Validation, limits,
the provider and the services raise it; consumers, views and the reply's error policy only
catch it. A failure nobody planned for goes through `unexpected()`: logged with its
traceback, told as `internal`.
"""

import logging
from typing import Final

from django.http import JsonResponse

from chat import frames
from chat.frames import ErrorCode

logger = logging.getLogger(__name__)

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    "bad_request": 400,
    "too_large": 413,
    "busy": 409,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "provider_error": 503,
    "timeout": 504,
    "interrupted": 503,
    "internal": 500,
}


class ChatError(Exception):
    """A refusal or a failure, as the client is told of it."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        recoverable: bool | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.http_status = http_status  # when not the code's own (an unsupported type: 415)
        if recoverable is None:
            recoverable = frames.ERRORS[code].recoverable
            if recoverable is None:
                raise TypeError(f"a {code!r} error must say whether it is recoverable")
        self.recoverable = recoverable

    @property
    def status(self) -> int:
        """The HTTP status of a request refused with this error."""
        return self.http_status or HTTP_STATUS[self.code]

    def frame(self, *, message_id: str | None = None, seq: int | None = None) -> frames.ErrorFrame:
        """The `error` frame; with a `message_id` (and its `seq`) it ends that reply."""
        return frames.error(
            code=self.code,
            message=self.message,
            recoverable=self.recoverable,
            message_id=message_id,
            seq=seq,
        )

    def response(self) -> JsonResponse:
        """The JSON answer of an HTTP request refused with this error."""
        return JsonResponse(self.frame(), status=self.status)


def unexpected(what: str) -> ChatError:
    """The policy for a failure nobody planned for; call it inside the `except` block that
    caught it. Logged with its traceback, told as `internal` (retrying may help)."""
    logger.exception("%s failed", what)
    return ChatError("internal", "The server failed; try again.", recoverable=True)
