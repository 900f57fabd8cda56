"""Shares over HTTP: the owner makes, lists and revokes a thread's read-only links; anyone with
a link reads its snapshot and the snapshot's files, with no login and nothing else opened.

The readers' endpoints run no authentication at all (so no CSRF either, and a bad credential
does not turn a public read into a 401); the owner's go through the API's own (session with
CSRF, or a client secret).
"""

from django.http import FileResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import frames, selectors, services
from chat.api.attachments import serve

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
NOT_FOUND = "No such share: it was revoked, it expired, or it never existed."

SHARE_FIELDS = {
    "token": serializers.CharField(),
    "url": serializers.URLField(),
    "up_to": serializers.UUIDField(),
    "created_at": serializers.DateTimeField(),
    "expires_at": serializers.DateTimeField(allow_null=True),
}
SharedThreadSerializer = inline_serializer(
    "SharedThread",
    {
        "title": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "messages": serializers.ListField(child=serializers.DictField()),
    },
)


def _shown(request: Request, share) -> frames.ShareObject:
    """A share as its owner sees it, its page's address made absolute for this request."""
    return frames.share_object(share, url=request.build_absolute_uri(frames.share_url(share.token)))


def _no_store(response):
    """A share answers fresh every time: once revoked, no cache may still show it."""
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


class ThreadSharesView(APIView):
    """`/api/threads/<id>/shares/`: the thread's live shares (GET), or a new one (POST
    `{"up_to"?, "expires_in"?}`, 201); the thread's owner only (404 for anyone else)."""

    def _thread(self, request: Request, thread_id: str):
        thread = selectors.thread_get_for_user(user=request.user, thread_id=thread_id)
        if thread is None:
            raise NotFound("No such thread.")
        return thread

    @extend_schema(responses=inline_serializer("ShareList", SHARE_FIELDS, many=True))
    def get(self, request: Request, thread_id: str) -> Response:
        thread = self._thread(request, thread_id)
        shares = selectors.thread_shares(thread=thread)
        return Response([_shown(request, share) for share in shares])

    @extend_schema(
        request=inline_serializer(
            "ShareRequest",
            {
                "up_to": serializers.UUIDField(required=False),
                "expires_in": serializers.IntegerField(required=False, min_value=1),
            },
        ),
        responses={201: inline_serializer("Share", SHARE_FIELDS)},
    )
    def post(self, request: Request, thread_id: str) -> Response:
        thread = self._thread(request, thread_id)
        given = request.data if isinstance(request.data, dict) else {}
        share = services.share_create(
            thread=thread, up_to=given.get("up_to"), expires_in=given.get("expires_in")
        )
        return Response(_shown(request, share), status=status.HTTP_201_CREATED)


class ShareView(APIView):
    """`/api/shares/<token>/`: anyone with the token reads the snapshot (GET, no login); its
    owner revokes it (DELETE, 204; 404 for anyone else)."""

    # A read is public: no authentication runs for it (so a session needs no CSRF token and a
    # stale credential is no 401); a revoke authenticates as the rest of the API does.
    public = False

    def initialize_request(self, request, *args, **kwargs):
        self.public = request.method in SAFE_METHODS
        return super().initialize_request(request, *args, **kwargs)

    def get_authenticators(self):
        return [] if self.public else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self.public else super().get_permissions()

    @extend_schema(auth=[], responses=SharedThreadSerializer)
    def get(self, request: Request, token: str) -> Response:
        share = selectors.share_get(token=token)
        if share is None:
            raise NotFound(NOT_FOUND)
        return _no_store(Response(frames.shared_thread(share)))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, token: str) -> Response:
        share = selectors.share_get_for_user(user=request.user, token=token)
        if share is None:
            raise NotFound(NOT_FOUND)
        services.share_revoke(share=share)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ShareAttachmentView(APIView):
    """`GET /api/shares/<token>/attachments/<id>`: a file of the share's snapshot, to anyone
    with the token, with the owner's headers (nosniff; a download unless an image); any
    other file is 404."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(auth=[], responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, token: str, attachment_id: str) -> FileResponse:
        share = selectors.share_get(token=token)
        attachment = share and selectors.share_attachment(share=share, attachment_id=attachment_id)
        if not attachment:
            raise NotFound("No such file in this share.")
        response = serve(attachment)
        return _no_store(response)
