"""DRF's exception handler, knowing our one error type: a `ChatError` raised by a service
answers as the `error` object of docs/protocol.md with its HTTP status, as the streaming
endpoints answer it."""

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from chat import metrics
from chat.errors import ChatError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ChatError):
        metrics.refused(exc.code)
        return Response(exc.frame(), status=exc.status)
    return drf_exception_handler(exc, context)
