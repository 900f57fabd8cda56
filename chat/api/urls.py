"""`/api/` routes."""

from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from chat.api import attachments, chatkit, shares, streaming
from chat.api.views import ChatKitSessionView, FeedbackView, ModelsView, ThreadViewSet, UsageView
from chat.chatkit import attachments as chatkit_attachments

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("threads", ThreadViewSet, basename="thread")

urlpatterns = [
    path("stream/message", streaming.stream_message, name="stream-message"),
    path("stream/chatkit", streaming.stream_chatkit, name="stream-chatkit"),
    path("threads/<uuid:thread_id>/events/", streaming.thread_events, name="thread-events"),
    path("chatkit", chatkit.chatkit, name="chatkit"),
    path("chatkit/session", ChatKitSessionView.as_view(), name="chatkit-session"),
    path(
        "chatkit/attachments/<uuid:attachment_id>/upload",
        chatkit_attachments.upload,
        name="chatkit-attachment-upload",
    ),
    path("usage/", UsageView.as_view(), name="usage"),
    path("models/", ModelsView.as_view(), name="models"),
    path("attachments/", attachments.upload, name="attachments"),
    path(
        "attachments/<uuid:attachment_id>/",
        attachments.AttachmentView.as_view(),
        name="attachment",
    ),
    path(
        "attachments/<uuid:attachment_id>/content",
        attachments.AttachmentContentView.as_view(),
        name="attachment-content",
    ),
    path("messages/<uuid:message_id>/feedback/", FeedbackView.as_view(), name="message-feedback"),
    path(
        "threads/<uuid:thread_id>/shares/",
        shares.ThreadSharesView.as_view(),
        name="thread-shares",
    ),
    path("shares/<str:token>/", shares.ShareView.as_view(), name="share"),
    path(
        "shares/<str:token>/attachments/<uuid:attachment_id>",
        shares.ShareAttachmentView.as_view(),
        name="share-attachment",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/",
        # Swagger UI starts from an inline script: this page alone may run inline code.
        csp_update({"script-src": ["'unsafe-inline'"], "style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerView.as_view(url_name="schema")
        ),
        name="api-docs",
    ),
    *router.urls,
]
