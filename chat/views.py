"""The chat page and the health check."""

import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from chat import agent, frames, selectors, shutdown
from chat.errors import ChatError

PAGE_MESSAGES = 200


@login_required
def chat_page(request: HttpRequest, thread_id: uuid.UUID | None = None) -> HttpResponse:
    """`/` and `/t/<id>/`: the chat, with the thread's messages embedded for a fast first paint."""
    messages = []
    if thread_id is not None:
        thread = selectors.thread_get_for_user(user=request.user, thread_id=thread_id)
        if thread is None:
            raise Http404("No such thread")
        messages = selectors.thread_messages(thread_id=thread.id)[-PAGE_MESSAGES:]
    try:
        chosen = agent.provider()
        provider = {
            "name": chosen.name,
            "model": chosen.model,
            "offlineDemo": chosen.offline_demo,
        }
    except ChatError:
        provider = {"name": settings.AGENT_PROVIDER, "model": "", "offlineDemo": False}
    chat_config = {
        "threadId": str(thread_id) if thread_id else None,
        "threads": [frames.thread_object(t) for t in selectors.thread_list(user=request.user)],
        "messages": [frames.message_object(m) for m in messages],
        "provider": provider,
        "maxMessageChars": settings.MAX_MESSAGE_CHARS,
        "username": request.user.get_username(),
    }
    return render(request, "chat/index.html", {"chat_config": chat_config})


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database answers, and Redis when it is configured; a
    process draining for shutdown is not ready, so a balancer sends new users elsewhere."""
    checks: dict[str, str] = {}
    if shutdown.draining():
        checks["process"] = "draining"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        import redis

        try:
            with redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
            ) as client:
                client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", **checks},
        status=200 if healthy else 503,
    )
