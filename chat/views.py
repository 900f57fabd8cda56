"""The chat page, the ChatKit page, the health check, and the site's error answers."""

import asyncio
import uuid
from typing import Any

from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views import csrf, defaults

from chat import catalog, dbthread, frames, model_choice, runtime, selectors, shutdown
from chat import metrics as chat_metrics
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
        messages = selectors.active_path(thread=thread, newest=PAGE_MESSAGES)
    provider = _provider()
    chat_config = {
        "threadId": str(thread_id) if thread_id else None,
        "threads": [frames.thread_object(t) for t in selectors.thread_list(user=request.user)],
        "messages": [frames.message_object(m) for m in messages],
        "provider": provider,
        "models": _models(request.user.pk),
        "preferredModel": _preferred_model(request.user.pk),
        "feedbackTags": settings.FEEDBACK_TAGS,
        "maxMessageChars": settings.MAX_MESSAGE_CHARS,
        "maxUploadBytes": settings.MAX_UPLOAD_BYTES,
        "username": request.user.get_username(),
    }
    return render(request, "chat/index.html", {"chat_config": chat_config})


def share_page(request: HttpRequest, token: str) -> HttpResponse:
    """`/s/<token>/`: a share's snapshot, read-only, for anyone with the link (logged in or
    not): the messages, no composer, no socket, no thread list. Revoked, expired or unknown:
    the site's 404 page. Never indexed, never cached."""
    share = selectors.share_get(token=token)
    if share is None:
        response = render(request, "404.html", status=404)
    else:
        response = render(
            request,
            "chat/share.html",
            {"shared": frames.shared_thread(share), "shared_at": share.created_at},
        )
    response["X-Robots-Tag"] = "noindex"
    response["Cache-Control"] = "no-store"
    return response


# OpenAI's ChatKit web component: the script, and the origin it runs its frame from.
CHATKIT_ORIGIN = "https://cdn.platform.openai.com"
CHATKIT_SCRIPT = f"{CHATKIT_ORIGIN}/deployments/chatkit/chatkit.js"


@login_required
@csp_update(
    {
        "script-src": [CHATKIT_ORIGIN],
        "frame-src": [CHATKIT_ORIGIN],
        "style-src": [CHATKIT_ORIGIN],
        "connect-src": [CHATKIT_ORIGIN, "https://api.openai.com"],
    }
)
def chatkit_page(request: HttpRequest) -> HttpResponse:
    """`/chatkit/`: OpenAI's ChatKit web component (from OpenAI's CDN, in the user's browser)
    on this server's ChatKit endpoint, with a client secret from `/api/chatkit/session`; with
    CHATKIT_WORKFLOW_ID set, on that hosted workflow instead (the operator's choice)."""
    config = {
        "script": CHATKIT_SCRIPT,
        "api": reverse("chatkit"),
        "session": reverse("chatkit-session"),
        "domainKey": settings.CHATKIT_DOMAIN_KEY,
        "hosted": bool(settings.CHATKIT_WORKFLOW_ID),
        "offlineDemo": _provider()["offlineDemo"],
        "models": _models(request.user.pk),
        "preferredModel": _preferred_model(request.user.pk),
    }
    return render(request, "chat/chatkit.html", {"chatkit_config": config})


def _provider() -> dict[str, Any]:
    """The default model the pages name, and whether it is the offline demo (labelled)."""
    try:
        chosen = catalog.default()
    except ChatError:
        return {"name": settings.AGENT_PROVIDER, "model": "", "offlineDemo": False}
    return {"name": chosen.provider, "model": chosen.id, "offlineDemo": chosen.offline_demo}


def _models(user_id: int) -> list[dict[str, Any]]:
    """The models the user may pick (empty when the configuration is broken: a reply says
    why), each with whether it is the offline demo."""
    try:
        usable = model_choice.usable(user_id=user_id)
    except ChatError:
        return []
    return [{**m.public(), "offlineDemo": m.offline_demo} for m in usable]


def _preferred_model(user_id: int) -> str:
    """The model a new thread of this user's takes."""
    try:
        return model_choice.for_reply(user_id=user_id, thread_id="", asked=None, new_thread=True).id
    except ChatError:
        return ""


def metrics(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: this process's Prometheus series (chat/metrics.py), for a direct
    loopback peer or a bearer of METRICS_TOKEN; anyone else 403."""
    if not chat_metrics.may_read(request.META, request.META.get("REMOTE_ADDR", "")):
        return HttpResponse("Forbidden: loopback or METRICS_TOKEN only.\n", status=403)
    body, content_type = chat_metrics.exposition()
    return HttpResponse(body, content_type=content_type)


async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database answers, and Redis when it is configured (on the
    process's own client: a balancer's check every second opens no connection); a process
    draining for shutdown is not ready, so a balancer sends new users elsewhere."""
    checks: dict[str, str] = {}
    if shutdown.draining():
        checks["process"] = "draining"
    try:
        await dbthread.off_loop(_database_answers)()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    if settings.REDIS_URL:
        try:
            await asyncio.wait_for(runtime.redis_client().ping(), 2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", **checks},
        status=200 if healthy else 503,
    )


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the JSON APIs answer JSON (DRF's own shape), pages Django's page."""
    if _api(request):
        return JsonResponse({"detail": f"CSRF Failed: {reason}"}, status=403)
    return csrf.csrf_failure(request, reason=reason)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400: a body past DATA_UPLOAD_MAX_MEMORY_SIZE is `too_large` (413); on the JSON
    APIs every 400 answers JSON."""
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return ChatError("too_large", f"The request body is over {limit} bytes.").response()
    if _api(request):
        return ChatError("bad_request", "The request is malformed.").response()
    return defaults.bad_request(request, exception)
