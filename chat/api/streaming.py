"""Server-sent events: a reply streamed over HTTP, and a thread's frames as an EventSource.

Plain async Django views, because DRF views are synchronous and cannot stream without holding
a thread. Each response is a subscriber of the generation service like a WebSocket is: it joins
the thread's group before starting or reading anything, so no frame falls in between. Closing
the request never stops a reply (Django cancels the generator; the reply task goes on).
"""

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chat import auth, frames, generation, inputs, limits, outage, selectors, services
from chat.models import Message
from chat.subscription import Subscription

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15
# HTTP statuses of refusals that happen before a stream begins.
STATUS = {
    "bad_request": 400,
    "too_large": 413,
    "busy": 409,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "provider_error": 503,
    "internal": 500,
}


def _refusal(code: frames.ErrorCode, message: str, status: int) -> JsonResponse:
    return JsonResponse(frames.error(code=code, message=message, recoverable=False), status=status)


def _detail(text: str, status: int) -> JsonResponse:
    """The DRF-shaped answer of an authentication or lookup failure."""
    response = JsonResponse({"detail": text}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


async def _authenticate(request: HttpRequest) -> tuple[Any, HttpResponse | None]:
    """Bearer client secret, else the session with its CSRF check (as DRF does)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        user = None
        if scheme.lower() == "bearer":
            user = await database_sync_to_async(auth.secret_user)(secret.strip())
        if user is None:
            return None, _detail("The client secret is invalid or expired.", 401)
        return user, None
    user = await request.auser()
    if not user.is_authenticated:
        return None, _detail("Log in, or send Authorization: Bearer <client secret>.", 401)
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
        csrf = CsrfViewMiddleware(lambda r: None)
        if (rejected := csrf.process_view(request, None, (), {})) is not None:
            return None, rejected
    return user, None


def _same_origin(request: HttpRequest) -> bool:
    """A browser's own-origin request, told by the Origin header browsers always send on POST.

    Verifying Origin is a CSRF defence of its own (OWASP), and it lets a page's plain
    `fetch('/api/stream/message', {method: 'POST', body})` stream without a token. A request
    with no Origin (curl, scripts) or a foreign one still needs the CSRF token.
    """
    try:
        host = request.get_host()
    except DisallowedHost:
        return False
    return auth.own_origin(request.headers.get("Origin"), scheme=request.scheme, host=host)


def _json_body(request: HttpRequest) -> dict[str, Any] | None:
    try:
        body = inputs.loads(request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _stream_failed() -> dict[str, Any]:
    return frames.error(
        code="internal", message="The stream failed; reconnect to resume.", recoverable=True
    )


def event(frame: dict[str, Any], *, event_id: str | None = None) -> str:
    """One SSE event: the frame as `data:`, with an `id:` when it has one."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(frame)}\n\n"


def _sse(events: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@csrf_exempt
@require_POST
async def stream_message(request: HttpRequest) -> HttpResponse:
    """`POST /api/stream/message` {message, thread_id?, client_id?}: the reply as SSE."""
    return await _stream_reply(request, thread_required=False)


@csrf_exempt
@require_POST
async def stream_chatkit(request: HttpRequest) -> HttpResponse:
    """`POST /api/stream/chatkit` {message, thread_id}: the same stream for an existing thread."""
    return await _stream_reply(request, thread_required=True)


async def _stream_reply(request: HttpRequest, *, thread_required: bool) -> HttpResponse:
    user, refusal = await _authenticate(request)
    if refusal is not None:
        return refusal
    body = _json_body(request)
    if body is None:
        return _refusal("bad_request", "The body must be a JSON object.", 400)
    thread_id = body.get("thread_id")
    if thread_id is None and thread_required:
        return _refusal("bad_request", "`thread_id` is required.", 400)
    created = thread_id is None
    if created:
        thread = await database_sync_to_async(services.thread_create)(owner=user)
    else:
        thread = await database_sync_to_async(selectors.thread_get_for_user)(
            user=user, thread_id=str(thread_id)
        )
        if thread is None:
            return _detail("No such thread.", 404)
    subscription = Subscription(str(thread.id))
    await subscription.__aenter__()
    try:
        started = await generation.reply_start(
            user_id=user.pk,
            thread_id=str(thread.id),
            text=body.get("message"),
            client_id=body.get("client_id"),
        )
    except generation.GenerationError as exc:
        await subscription.__aexit__(None, None, None)
        if created:  # a refused send leaves no empty thread behind
            await outage.off_loop(services.thread_discard_if_empty)(thread_id=thread.id)
        return JsonResponse(exc.frame(), status=STATUS.get(exc.code, 400))
    except BaseException:
        await subscription.__aexit__(None, None, None)
        raise
    response = _sse(_reply_events(subscription, started))
    response["X-Thread-Id"] = str(thread.id)
    return response


async def _reply_events(
    subscription: Subscription, started: generation.StartResult
) -> AsyncIterator[str]:
    """This reply's frames, `id:` being each frame's seq, ending with its last frame."""
    try:
        if started.duplicate:
            # A retried send: what this reply has said so far, then whatever follows.
            for frame in await _replay_reply(subscription.thread_id, started.reply_id):
                subscription.filter.admit(frame)
                yield event(frame, event_id=str(frame["seq"]))
                if frames.is_terminal(frame):
                    return
        while True:
            frame = await subscription.next(HEARTBEAT_SECONDS)
            if frame is None:
                yield ": heartbeat\n\n"
                continue
            mine = frame.get("message_id") == started.reply_id
            if frame["type"] == "message" or mine:
                yield event(frame, event_id=str(frame["seq"]) if mine else None)
            if mine and frames.is_terminal(frame):
                return
    except Exception:
        # The reply itself goes on (its task is not ours); this stream says it failed.
        logger.exception("reply stream of thread %s failed", subscription.thread_id)
        yield event(_stream_failed())
    finally:
        await subscription.__aexit__(None, None, None)


async def _replay_reply(thread_id: str, reply_id: str) -> list[dict[str, Any]]:
    """The reply's frames so far: from the live record, or rebuilt from the saved message."""
    replayed = await generation.thread_replay(
        thread_id=thread_id, message_id=reply_id, after_seq=-1
    )
    if replayed is not None:
        return replayed
    reply = await database_sync_to_async(Message.objects.filter(pk=reply_id).first)()
    if reply is None:
        return []
    return frames.of_saved_reply(selectors.message_payload(reply))


@require_GET
async def thread_events(request: HttpRequest, thread_id: uuid.UUID) -> HttpResponse:
    """`GET /api/threads/<id>/events/`: every frame of the thread, resumable by Last-Event-ID.

    Event ids are `<message_id>:<seq>`; a reconnecting EventSource sends the last one back and
    gets exactly the frames it missed (a finished reply stays replayable for a few minutes),
    or, when that is no longer known, a fresh `ready`.
    """
    user, refusal = await _authenticate(request)
    if refusal is not None:
        return refusal
    thread = await database_sync_to_async(selectors.thread_get_for_user)(
        user=user, thread_id=thread_id
    )
    if thread is None:
        return _detail("No such thread.", 404)
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("lastEventId", "")
    opened = _OpenStream(user.pk, uuid.uuid4().hex, _credential(request, user))
    if not await limits.socket_open(user_id=user.pk, socket_id=opened.socket_id):
        return _refusal(
            "rate_limited",
            f"At most {settings.MAX_SOCKETS_PER_USER} sockets and event streams open at once; "
            "close one.",
            429,
        )
    subscription = Subscription(str(thread.id))
    try:
        await subscription.__aenter__()
    except BaseException:
        await opened.closed()
        raise
    return _sse(_thread_events(subscription, last_event_id, opened))


class _OpenStream:
    """An event stream's standing: who opened it with what, counted among the user's sockets."""

    def __init__(self, user_id: int, socket_id: str, credential: auth.Credential) -> None:
        self.user_id, self.socket_id, self.credential = user_id, socket_id, credential
        self.ends = time.monotonic() + settings.SSE_MAX_SECONDS

    async def holds(self) -> bool:
        """The credential still holds (the stream's count renewed); False ends the stream."""
        if not await self.credential.holds():
            return False
        await limits.socket_open(user_id=self.user_id, socket_id=self.socket_id)
        return True

    async def closed(self) -> None:
        await limits.socket_closed(user_id=self.user_id, socket_id=self.socket_id)


def _credential(request: HttpRequest, user: Any) -> auth.Credential:
    """What the stream was opened with: the Bearer client secret, else the session."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return auth.Credential(user.pk, secret=secret.strip())
    return auth.Credential(user.pk, session_key=request.session.session_key or "")


def _parse_event_id(value: str) -> tuple[str | None, int] | None:
    message_id, _, seq = value.strip().rpartition(":")
    try:
        return (message_id or None), int(seq)
    except ValueError:
        return None


async def _thread_events(
    subscription: Subscription, last_event_id: str, opened: _OpenStream
) -> AsyncIterator[str]:
    try:
        yield "retry: 1000\n\n"
        replayed = None
        if (resume := _parse_event_id(last_event_id)) is not None:
            message_id, seq = resume
            replayed = await generation.thread_replay(
                thread_id=subscription.thread_id, message_id=message_id, after_seq=seq
            )
            if replayed is not None and message_id is not None:
                subscription.filter.covered(message_id, seq)
        if replayed is None:
            yield event(await subscription.ready())
            replayed = []
        for frame in replayed:
            if subscription.filter.admit(frame):
                yield event(frame, event_id=f"{frame['message_id']}:{frame['seq']}")
        checked = time.monotonic()
        while (left := opened.ends - time.monotonic()) > 0:  # SSE_MAX_SECONDS: EventSource
            # reconnects with Last-Event-ID and resumes
            wait = min(HEARTBEAT_SECONDS, settings.SESSION_CHECK_SECONDS, left)
            frame = await subscription.next(wait)
            if time.monotonic() - checked >= settings.SESSION_CHECK_SECONDS:
                checked = time.monotonic()
                if not await opened.holds():
                    return  # logged out, password changed, secret expired: the stream ends
            if frame is None:
                yield ": heartbeat\n\n"
            elif "seq" in frame:
                yield event(frame, event_id=f"{frame['message_id']}:{frame['seq']}")
            else:
                yield event(frame)
    except Exception:
        logger.exception("event stream of thread %s failed", subscription.thread_id)
        yield event(_stream_failed())
    finally:
        await subscription.__aexit__(None, None, None)
        await opened.closed()
