"""Threads and their messages over HTTP; the owner's alone."""

from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from chat import services
from chat.api.serializers import MessageSerializer, ThreadSerializer
from chat.models import Message, Thread


class ThreadPagination(CursorPagination):
    """Newest threads first."""

    ordering = "-updated_at"
    page_size = 50


class MessagePagination(CursorPagination):
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


class ThreadViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """`/api/threads/`: list, create, read, rename, delete; `messages/` of one."""

    serializer_class = ThreadSerializer
    pagination_class = ThreadPagination
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Thread.objects.none()
        # Another user's thread is simply not found (404), never forbidden (403).
        return Thread.objects.filter(owner=self.request.user)

    def perform_create(self, serializer: ThreadSerializer) -> None:
        serializer.instance = services.thread_create(
            owner=self.request.user, title=serializer.validated_data.get("title", "")
        )

    @action(detail=True, methods=["get"], serializer_class=MessageSerializer)
    def messages(self, request: Request, pk: str | None = None) -> Response:
        """The thread's messages, paginated by cursor."""
        thread = self.get_object()
        paginator = MessagePagination()
        page = paginator.paginate_queryset(Message.objects.filter(thread=thread), request, self)
        return paginator.get_paginated_response(MessageSerializer(page, many=True).data)
