"""ChatKit's composer attachments on our own uploads: the package's two-phase upload.

`attachments.create` (name, size, type, as the browser claims them) announces an upload: a row
of ours with no bytes yet (services.attachment_announce), answered with an upload descriptor,
`POST /api/chatkit/attachments/<id>/upload`. ChatKit then posts the file there (multipart,
field `file`), authenticated as `/api/chatkit` is (a client secret, or the session with its
CSRF or Origin check), by the attachment's owner only. The bytes go through the same checks as
`POST /api/attachments/` (services.attachment_upload: the type from the bytes, the limits, the
quota; chat/upload_limit.py refuses a body past MAX_UPLOAD_BYTES before it is read), so a
ChatKit upload is the same row the page, the API and the admin show, sent to the model the same
way. A refused file is an HTTP error with the protocol's error object, and the announced upload
stays waiting, with no file, until ChatKit removes it (`attachments.delete`) or the sweeper does.
"""

import asyncio
from typing import Any

from chatkit.store import AttachmentStore, NotFoundError
from chatkit.types import Attachment, AttachmentCreateParams, AttachmentUploadDescriptor
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from chat import attachments, dbthread, errors, metrics, outage, selectors, services
from chat.api import request_auth
from chat.api.attachments import uploaded_file
from chat.chatkit import items
from chat.chatkit.store import RequestContext
from chat.errors import ChatError
from chat.models import Attachment as Upload


def upload_path(attachment_id: str) -> str:
    """Where ChatKit posts an announced upload's bytes."""
    return f"/api/chatkit/attachments/{attachment_id}/upload"


class DjangoAttachmentStore(AttachmentStore[RequestContext]):
    """`attachments.create` and `attachments.delete` on the user's own uploads."""

    async def create_attachment(
        self, input: AttachmentCreateParams, context: RequestContext
    ) -> Attachment:
        """An upload announced, and where to send its bytes (a size past MAX_UPLOAD_BYTES is
        refused at once)."""
        if input.size > settings.MAX_UPLOAD_BYTES:
            raise ChatError("too_large", f"The file is over {settings.MAX_UPLOAD_BYTES:,} bytes.")
        upload = await outage.db(
            "announcing an upload",
            services.attachment_announce,
            owner=context.user,
            name=input.name,
            mime_type=input.mime_type,
        )
        attachment = items.attachment_of(upload, base_url=context.base_url)
        # ChatKit sends these headers with the bytes: the same secret as its request, for a
        # front end whose uploads do not go through its `api.fetch`.
        headers = {"Authorization": f"Bearer {context.secret}"} if context.secret else {}
        attachment.upload_descriptor = AttachmentUploadDescriptor(
            url=context.base_url.rstrip("/") + upload_path(str(upload.id)),
            method="POST",
            headers=headers,
        )
        return attachment

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        """Remove an upload not sent yet, with its file (another user's is not found)."""
        await outage.db(
            f"removing attachment {attachment_id}",
            _delete,
            user=context.user,
            attachment_id=attachment_id,
        )


def _delete(*, user: AbstractBaseUser, attachment_id: str) -> None:
    upload = selectors.attachment_get_for_user(user=user, attachment_id=attachment_id)
    if upload is None:
        raise NotFoundError("No such attachment.")
    if upload.message_id is not None:
        raise ChatError("bad_request", "A file sent with a message goes with that message.")
    services.attachment_delete(attachment=upload)


@csrf_exempt  # request_auth.authenticate checks CSRF (or Origin) for session requests
@require_POST
async def upload(request: HttpRequest, attachment_id: str) -> HttpResponse:
    """`POST /api/chatkit/attachments/<id>/upload` (multipart, field `file`): the bytes of an
    upload announced by `attachments.create`, by its owner; 200 with the ChatKit attachment."""
    authenticated = await request_auth.authenticate(request)
    if isinstance(authenticated, HttpResponse):
        return authenticated
    user, _ = authenticated
    try:
        sent = await asyncio.to_thread(uploaded_file, request)
        # What the file is (the CPU of a PDF's text or an image's re-encoding) in a worker
        # thread: no event loop and no database thread waits on it.
        inspected = await asyncio.to_thread(attachments.inspect, sent.name, sent.read())
        return await dbthread.off_loop(_upload)(request, user, str(attachment_id), inspected)
    except ChatError as refused:
        metrics.refused(refused.code)
        return refused.response()
    except Exception:
        return errors.unexpected(f"ChatKit upload of {attachment_id}").response()


def _upload(
    request: HttpRequest, user: AbstractBaseUser, attachment_id: str, inspected: Any
) -> HttpResponse:
    waiting = selectors.attachment_get_for_user(user=user, attachment_id=attachment_id)
    if waiting is None:
        return request_auth.detail("No such attachment.", 404)
    stored: Upload = services.attachment_fill(attachment=waiting, inspected=inspected)
    shown = items.attachment_of(stored, base_url=request.build_absolute_uri("/"))
    body = shown.model_dump_json(
        by_alias=True, exclude_none=True, context={"exclude_metadata": True}
    )
    return HttpResponse(body, content_type="application/json")
