"""Threads, their messages and exports, and ChatKit sessions over HTTP; the owner's alone."""

import openai
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import HttpResponse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import auth, frames, model_choice, quota, selectors, services
from chat.api import export
from chat.api.serializers import (
    FeedbackSerializer,
    MessageSerializer,
    ModelSerializer,
    ThreadSerializer,
)
from chat.models import Message, Thread


class CheckedCursorPagination(CursorPagination):
    """A cursor pagination that answers a forged cursor with 404, as DRF does a garbled one.

    DRF decodes the cursor but passes its position to the query unchecked: a position that is
    no date, or no UUID, failed in the database layer as a 500.
    """

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise NotFound(self.invalid_cursor_message) from None


class ThreadPagination(CheckedCursorPagination):
    """Newest threads first."""

    ordering = ("-updated_at", "-id")
    page_size = 50


class MessagePagination(CheckedCursorPagination):
    """Newest page first; each page oldest first, with `previous` leading to older messages."""

    ordering = ("-created_at", "-id")
    page_size = 50

    def get_paginated_response(self, data: list) -> Response:
        return Response(
            {
                "next": self.get_previous_link(),
                "previous": self.get_next_link(),
                "results": list(reversed(data)),
            }
        )


@extend_schema(
    parameters=[
        OpenApiParameter("search", str, description="Only threads whose title or text has this")
    ]
)
class ThreadViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """`/api/threads/`: list (newest first, searchable), create, read, rename, pin, switch
    branch, delete."""

    serializer_class = ThreadSerializer
    pagination_class = ThreadPagination
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Thread.objects.none()
        # Another user's thread is simply not found (404), never forbidden (403).
        threads = Thread.objects.filter(owner=self.request.user)
        # No NUL: PostgreSQL cannot take one in a query, and no stored text has one.
        search = self.request.query_params.get("search", "").replace("\x00", "").strip()
        if search and self.action == "list":
            in_text = Message.objects.filter(thread=OuterRef("pk"), content__icontains=search)
            threads = threads.filter(Q(title__icontains=search) | Q(Exists(in_text)))
        return threads

    def perform_create(self, serializer: ThreadSerializer) -> None:
        serializer.instance = services.thread_create(
            owner=self.request.user,
            title=serializer.validated_data.get("title", ""),
            model=serializer.validated_data.get("model"),
        )

    def perform_update(self, serializer: ThreadSerializer) -> None:
        # Through the services, which tell the owner's other tabs; one transaction, so a
        # refused model leaves the title too.
        data, thread = serializer.validated_data, serializer.instance
        with transaction.atomic():
            if "model" in data:
                thread = services.thread_set_model(thread=thread, model=data["model"])
            if "title" in data:
                thread = services.thread_rename(thread=thread, title=data["title"])
            if "pinned" in data:
                thread = services.thread_pin(thread=thread, pinned=data["pinned"])
            if "active_leaf_id" in data:
                thread = services.thread_switch(thread=thread, active_leaf=data["active_leaf_id"])
        serializer.instance = thread

    def perform_destroy(self, instance: Thread) -> None:
        services.thread_delete(thread=instance)

    @extend_schema(responses=MessageSerializer(many=True))
    @action(detail=True, methods=["get"], serializer_class=MessageSerializer)
    def messages(self, request: Request, pk: str | None = None) -> Response:
        """The thread's active path (the branch it shows), paginated by cursor; each message
        with its `parent_id` and `siblings`."""
        thread = self.get_object()
        paginator = MessagePagination()
        path, tree = selectors.path_ids(thread=thread)
        messages = (
            Message.objects.filter(pk__in=path)
            .select_related("feedback")
            .prefetch_related("attachments")
        )
        page = selectors.with_siblings(paginator.paginate_queryset(messages, request, self), tree)
        return paginator.get_paginated_response(MessageSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["markdown", "json"], default="markdown")],
        responses={(200, "text/markdown"): OpenApiTypes.STR, (200, "application/json"): dict},
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None) -> HttpResponse:
        """The thread as a Markdown file (the branch it shows) or a JSON one (every branch)."""
        thread = self.get_object()
        kind = request.query_params.get("format", "markdown")
        if kind not in ("markdown", "json"):
            return Response(
                {"detail": "format must be markdown or json."}, status=status.HTTP_400_BAD_REQUEST
            )
        # JSON keeps the whole tree (`parent_id`, `siblings`); Markdown reads as the thread
        # shows, its active path.
        if kind == "json":
            messages = selectors.thread_messages(thread_id=thread.id)
        else:
            messages = selectors.active_path(thread=thread)
        name = slugify(thread.title)[:60] or f"thread-{str(thread.id)[:8]}"
        if kind == "json":
            response = HttpResponse(
                export.thread_json(thread, messages), content_type="application/json"
            )
            filename = f"{name}.json"
        else:
            response = HttpResponse(
                export.thread_markdown(thread, messages),
                content_type="text/markdown; charset=utf-8",
            )
            filename = f"{name}.md"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class ChatKitSessionView(APIView):
    """`POST /api/chatkit/session`: a short-lived client secret for this user.

    Only a logged-in browser session may ask: a secret cannot mint its own successor. With
    CHATKIT_WORKFLOW_ID set, the secret is a hosted OpenAI ChatKit session's instead.
    """

    authentication_classes = [SessionAuthentication]

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "ClientSecret",
                {
                    "client_secret": serializers.CharField(),
                    "expires_at": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        if not settings.CHATKIT_WORKFLOW_ID:
            secret, expires_at = auth.secret_issue(
                user=request.user, session_key=request.session.session_key or ""
            )
            return Response({"client_secret": secret, "expires_at": expires_at})
        if not settings.OPENAI_API_KEY:
            return Response(
                {"detail": "CHATKIT_WORKFLOW_ID is set but OPENAI_API_KEY is not."},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        client = openai.OpenAI(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL or None,
            max_retries=0,
            timeout=20,
        )
        try:
            session = client.beta.chatkit.sessions.create(
                user=str(request.user.pk), workflow={"id": settings.CHATKIT_WORKFLOW_ID}
            )
        except openai.APIStatusError as exc:
            return Response(
                {
                    "detail": f"OpenAI refused the ChatKit session (HTTP {exc.status_code}): "
                    f"{exc.message}"
                },
                status=status.HTTP_502_BAD_GATEWAY,
            )
        except openai.APIError as exc:
            return Response(
                {"detail": f"OpenAI could not be reached for a ChatKit session: {exc.message}"},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response({"client_secret": session.client_secret, "expires_at": session.expires_at})


class UsageView(APIView):
    """`GET /api/usage/`: the user's token budgets today (DAILY_TOKEN_BUDGET for output,
    DAILY_INPUT_BUDGET for input; `remaining` null when there is none), and their tokens of
    each kind per model and day over the last 30 days."""

    @extend_schema(
        responses=inline_serializer(
            "Usage",
            {
                "day": serializers.DateField(),
                "budget": serializers.IntegerField(),
                "used": serializers.IntegerField(),
                "reserved": serializers.IntegerField(),
                "remaining": serializers.IntegerField(allow_null=True),
                "resets_at": serializers.DateTimeField(),
                "input_budget": serializers.IntegerField(),
                "input_used": serializers.IntegerField(),
                "input_remaining": serializers.IntegerField(allow_null=True),
                "models": inline_serializer(
                    "ModelUsage",
                    {
                        "day": serializers.DateField(),
                        "model": serializers.CharField(),
                        "input_tokens": serializers.IntegerField(),
                        "output_tokens": serializers.IntegerField(),
                        "replies": serializers.IntegerField(),
                    },
                    many=True,
                ),
            },
        )
    )
    def get(self, request: Request) -> Response:
        return Response(quota.standing(user_id=request.user.pk))


class ModelsView(APIView):
    """`GET /api/models/`: the models this user may pick, not paginated; `default` marks the
    one a thread takes when nothing else was chosen."""

    @extend_schema(responses=ModelSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response([m.public() for m in model_choice.usable(user_id=request.user.pk)])


class FeedbackView(APIView):
    """`PUT /api/messages/<id>/feedback/`: rate one of the user's finished replies (up or
    down, tags, a comment), replacing the rating before; `"rating": null` removes it."""

    @extend_schema(request=FeedbackSerializer, responses=FeedbackSerializer)
    def put(self, request: Request, message_id: str) -> Response:
        message = selectors.message_get_for_user(user=request.user, message_id=message_id)
        if message is None:
            raise NotFound("No such message.")
        saved = services.feedback_set(message=message, user=request.user, given=request.data)
        if saved is None:
            return Response({"rating": None, "tags": [], "comment": "", "updated_at": None})
        return Response(frames.feedback_object(saved))
