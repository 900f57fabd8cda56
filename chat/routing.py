"""WebSocket URLs: a thread's socket, the user's (their thread list); any other path is closed
with 4404, not an error."""

from django.urls import path, re_path

from chat.consumers import NoSuchSocket, ThreadConsumer, UserConsumer

websocket_urlpatterns = [
    path("ws/threads/<str:thread_id>/", ThreadConsumer.as_asgi()),
    path("ws/user/", UserConsumer.as_asgi()),
    re_path(r"", NoSuchSocket.as_asgi()),
]
