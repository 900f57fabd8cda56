"""`/api/attachments/`: upload a file, fetch it back, remove one never sent; the owner's alone.

The upload's size is refused before Django reads the body (chat/upload_limit.py); what the
file is comes from its bytes (chat/attachments.py), checked off the event loop in
services.attachment_create.
"""

import asyncio
from typing import Any

from django.conf import settings
from django.core.files.storage import storages
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import attachments, dbthread, frames, metrics, selectors, services
from chat.api import request_auth
from chat.errors import ChatError


@csrf_exempt  # request_auth.authenticate checks CSRF (or Origin) for session requests
@require_POST
async def upload(request: HttpRequest) -> HttpResponse:
    """`POST /api/attachments/` (multipart, field `file`): 201 with the attachment; it waits
    to be sent with a message (`attachments` of `start`), and is removed after a day if not.

    An async view: the body is parsed and the file inspected (a PDF's text, an image decoded
    and re-encoded) in worker threads, so neither the event loop, nor Django's one thread for
    sync views, nor the database's thread waits on one upload's CPU."""
    authenticated = await request_auth.authenticate(request)
    if isinstance(authenticated, HttpResponse):
        return authenticated
    user, _ = authenticated
    try:
        sent = await asyncio.to_thread(uploaded_file, request)
        inspected = await asyncio.to_thread(attachments.inspect, sent.name, sent.read())
        kept = await dbthread.off_loop(services.attachment_store)(owner=user, inspected=inspected)
    except ChatError as refused:
        metrics.refused(refused.code)
        return refused.response()
    return JsonResponse(frames.attachment_object(kept), status=201)


def uploaded_file(request: HttpRequest) -> Any:
    """The request's multipart `file`, within MAX_UPLOAD_BYTES (the body is parsed here)."""
    sent = request.FILES.get("file")
    if sent is None:
        raise ChatError("bad_request", "Send the file as the multipart field `file`.")
    if sent.size > settings.MAX_UPLOAD_BYTES:  # a length the header did not tell
        raise ChatError("too_large", f"The file is over {settings.MAX_UPLOAD_BYTES:,} bytes.")
    return sent


class AttachmentView(APIView):
    """`DELETE /api/attachments/<id>/`: remove an upload not yet sent (the page's chip)."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, attachment_id: str) -> Response:
        attachment = selectors.attachment_get_for_user(
            user=request.user, attachment_id=attachment_id
        )
        if attachment is None:
            raise NotFound("No such attachment.")
        if attachment.message_id is not None:
            raise ChatError("bad_request", "A file sent with a message goes with that message.")
        services.attachment_delete(attachment=attachment)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AttachmentContentView(APIView):
    """`GET /api/attachments/<id>/content`: the file, to its owner only; never sniffed by the
    browser, and a download unless it is an image."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, attachment_id: str) -> FileResponse:
        attachment = selectors.attachment_get_for_user(
            user=request.user, attachment_id=attachment_id
        )
        if attachment is None:
            raise NotFound("No such attachment.")
        return serve(attachment)


def serve(attachment) -> FileResponse:
    """An attachment's file with the headers that keep it inert in a browser."""
    try:
        stored = storages["attachments"].open(attachment.path, "rb")
    except FileNotFoundError:
        raise NotFound("The file is gone.") from None
    image = attachment.kind == "image"
    response = FileResponse(
        stored,
        content_type=attachment.mime_type,
        as_attachment=not image,
        filename=attachment.name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
