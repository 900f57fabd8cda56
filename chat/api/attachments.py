"""`/api/attachments/`: upload a file, fetch it back, remove one never sent; the owner's alone.

The upload's size is refused before Django reads the body (chat/upload_limit.py); what the
file is comes from its bytes (chat/attachments.py), checked off the event loop in
services.attachment_create.
"""

from django.conf import settings
from django.core.files.storage import storages
from django.http import FileResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import frames, selectors, services
from chat.errors import ChatError

AttachmentSerializer = inline_serializer(
    "Attachment",
    {
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "mime_type": serializers.CharField(),
        "size": serializers.IntegerField(),
        "kind": serializers.ChoiceField(choices=["image", "text", "document"]),
        "url": serializers.CharField(),
    },
)


class AttachmentsView(APIView):
    """`POST /api/attachments/` (multipart, field `file`): 201 with the attachment; it waits
    to be sent with a message (`attachments` of `start`), and is removed after a day if not."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        responses={201: AttachmentSerializer},
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise ChatError("bad_request", "Send the file as the multipart field `file`.")
        if upload.size > settings.MAX_UPLOAD_BYTES:  # a length the header did not tell
            raise ChatError("too_large", f"The file is over {settings.MAX_UPLOAD_BYTES:,} bytes.")
        content = upload.read()
        attachment = services.attachment_create(
            owner=request.user, name=upload.name, content=content
        )
        return Response(frames.attachment_object(attachment), status=status.HTTP_201_CREATED)


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
