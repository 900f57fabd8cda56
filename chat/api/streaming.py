"""Server-sent events: a reply streamed over HTTP, and a thread's frames as an EventSource
(docs/protocol.md, "Server-sent events").

Plain async Django views, because DRF views are synchronous and cannot stream without holding
a thread. Each response holds a `Subscriber` of the thread as a WebSocket does: it joins the
thread's frames before starting or reading anything, so no frame falls in between, and hands
it to its event generator, which only encodes frames as events and leaves when the stream
ends. Closing the request never stops a reply (Django cancels the generator; the reply task
goes on).
"""

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chat import dbthread, errors, inputs, selectors
from chat.api import request_auth
from chat.engine import generation
from chat.engine.subscription import Subscriber
from chat.errors import ChatError
from chat.standing import Standing

logger = logging.getLogger(__name__)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = inputs.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ChatError("bad_request", "The body must be a JSON object.")
    return body


def event(frame: dict[str, Any], *, event_id: str | None = None) -> str:
    """One SSE event: the frame as `data:`, with an `id:` when it has one."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(frame)}\n\n"


def _sse(events: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


# What a streaming POST may ask (its body's `command`, `start` when it names none): a new
# message, the rest of a reply the token limit cut, a new version of a user message of the
# active path, or a new answer to the last one (the last two make a new branch). Each takes
# the WebSocket command's fields; all but `start` name their thread.
STREAM_COMMANDS = ("start", "continue", "edit", "regenerate")


@csrf_exempt
@require_POST
async def stream_message(request: HttpRequest) -> HttpResponse:
    """`POST /api/stream/message` {message, thread_id?, client_id?}, or {command: "continue",
    message_id, thread_id, client_id?}, {command: "edit", message_id, message, thread_id, ...}
    or {command: "regenerate", thread_id, ...}: the reply as SSE."""
    return await _stream_reply(request, thread_required=False)


@csrf_exempt
@require_POST
async def stream_chatkit(request: HttpRequest) -> HttpResponse:
    """`POST /api/stream/chatkit` {message, thread_id}: the same stream for an existing thread."""
    return await _stream_reply(request, thread_required=True)


async def _stream_reply(request: HttpRequest, *, thread_required: bool) -> HttpResponse:
    authenticated = await request_auth.authenticate(request)
    if isinstance(authenticated, HttpResponse):
        return authenticated
    user, credential = authenticated
    try:
        body = _json_body(request)
        command = body.get("command", "start")
        if command not in STREAM_COMMANDS:
            raise ChatError(
                "bad_request",
                "`command` is `start` (the default), `continue`, `edit` or `regenerate`.",
            )
        thread_id = body.get("thread_id")
        if thread_id is None and (thread_required or command != "start"):
            raise ChatError("bad_request", "`thread_id` is required.")
    except ChatError as exc:
        return exc.response()
    # With no thread, the engine makes one in the transaction of its first message (as for
    # ChatKit), so a refused send leaves no thread, and no tab ever hears of one.
    new_thread_of = user.pk if thread_id is None else None
    if new_thread_of is not None:
        thread_id = uuid.uuid4()
    elif (
        await dbthread.off_loop(selectors.thread_get_for_user)(user=user, thread_id=str(thread_id))
        is None
    ):
        return request_auth.detail("No such thread.", 404)
    async with contextlib.AsyncExitStack() as stack:
        standing = await stack.enter_async_context(Standing(credential, transport="sse"))
        if not standing.counted:
            return _too_many().response()
        subscriber = await stack.enter_async_context(Subscriber(thread_id))
        standing.on_lost = subscriber.interrupt
        try:
            # The body is a `start`, `continue`, `edit` or `regenerate` command.
            ask = generation.ask_for({**body, "command": command})
            started = await generation.reply_begin(
                user_id=user.pk,
                thread_id=str(thread_id),
                ask=dataclasses.replace(ask, new_thread_of=new_thread_of),
                time_zone=body.get("time_zone"),
            )
        except ChatError as exc:
            return exc.response()
        # From here the event generator holds the subscription, and leaves it at its end.
        response = _sse(_reply_events(subscriber, started, standing, stack.pop_all()))
    response["X-Thread-Id"] = str(thread_id)
    return response


async def _reply_events(
    subscriber: Subscriber,
    started: generation.StartResult,
    standing: Standing,
    resources: contextlib.AsyncExitStack,
) -> AsyncIterator[str]:
    """This reply's frames (after what it said already, for a retried send; after its last
    frame before, for a `continue`), `id:` being each frame's seq, ending with its last frame
    (or at once when what opened it stops holding: logout; the reply itself goes on)."""
    reply_id = started.reply_id
    async with resources:
        try:
            following = subscriber.follow(
                reply_id,
                replay=started.duplicate,
                idle=settings.SSE_HEARTBEAT_SECONDS,
                since=started.continued,
            )
            async for frame in following:
                if standing.lost:
                    return
                if frame is None:
                    yield ": heartbeat\n\n"
                elif frame.get("message_id") == reply_id:
                    yield event(frame, event_id=str(frame["seq"]))
                elif frame["type"] == "message":
                    yield event(frame)
        except Exception:
            # The reply itself goes on (its task is not ours); this stream says it failed.
            failed = errors.unexpected(f"the reply stream of thread {subscriber.thread_id}")
            yield event(failed.frame())


@require_GET
async def thread_events(request: HttpRequest, thread_id: uuid.UUID) -> HttpResponse:
    """`GET /api/threads/<id>/events/`: every frame of the thread, resumable by Last-Event-ID.

    Event ids are `<message_id>:<seq>`; a reconnecting EventSource sends the last one back and
    gets exactly the frames it missed (a finished reply stays replayable for a few minutes),
    or, when that is no longer known, a fresh `ready`.
    """
    authenticated = await request_auth.authenticate(request)
    if isinstance(authenticated, HttpResponse):
        return authenticated
    user, credential = authenticated
    thread = await dbthread.off_loop(selectors.thread_get_for_user)(user=user, thread_id=thread_id)
    if thread is None:
        return request_auth.detail("No such thread.", 404)
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("lastEventId", "")
    async with contextlib.AsyncExitStack() as stack:
        standing = await stack.enter_async_context(Standing(credential, transport="sse"))
        if not standing.counted:
            return _too_many().response()
        # The thread's frames, and the user's thread list (other threads made, renamed...).
        subscriber = await stack.enter_async_context(Subscriber(thread.id, user_id=user.pk))
        standing.on_lost = subscriber.interrupt
        # From here the event generator holds both, and lets go of them at its end.
        return _sse(_thread_events(subscriber, last_event_id, standing, stack.pop_all()))


def _too_many() -> ChatError:
    return ChatError(
        "rate_limited",
        f"At most {settings.MAX_SOCKETS_PER_USER} sockets and event streams open at once; "
        "close one.",
        recoverable=False,
    )


def _parse_event_id(value: str) -> tuple[str | None, int] | None:
    message_id, _, seq = value.strip().rpartition(":")
    try:
        return (message_id or None), int(seq)
    except ValueError:
        return None


async def _thread_events(
    subscriber: Subscriber,
    last_event_id: str,
    standing: Standing,
    resources: contextlib.AsyncExitStack,
) -> AsyncIterator[str]:
    """The thread's frames until SSE_MAX_SECONDS pass (EventSource reconnects, resuming) or
    what opened the stream stops holding (logout, password change, a secret's expiry)."""
    async with resources:
        try:
            yield "retry: 1000\n\n"
            resume = _parse_event_id(last_event_id)
            if resume is None or not await subscriber.replay(*resume):
                await subscriber.ready()
            ends = time.monotonic() + settings.SSE_MAX_SECONDS
            while (left := ends - time.monotonic()) > 0:
                frame = await subscriber.next(min(settings.SSE_HEARTBEAT_SECONDS, left))
                if standing.lost:
                    return  # logged out, password changed, secret expired: it ends
                if frame is None:
                    yield ": heartbeat\n\n"
                elif "seq" in frame:
                    yield event(frame, event_id=f"{frame['message_id']}:{frame['seq']}")
                else:
                    yield event(frame)
        except Exception:
            failed = errors.unexpected(f"the event stream of thread {subscriber.thread_id}")
            yield event(failed.frame())
