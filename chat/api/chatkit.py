"""`POST /api/chatkit`: the ChatKit server protocol (docs/chatkit.md), for a ChatKit front end.

One endpoint, as the protocol has it: a JSON request whose `type` names what is asked. Thread
and item reads, rename and delete answer JSON; creating a thread, adding a message and retrying
answer a stream of ChatKit events (server-sent events), each reply written by our engine
(chat/chatkit/server.py). Authenticated like the rest of the API: the session cookie (with its
CSRF or Origin check) or `Authorization: Bearer <client secret>`.

Whatever fails before a stream's first event is an HTTP error with a JSON body, never a
broken stream: a malformed request 400, another user's thread or an unknown item 404, a
feature this backend does not offer 400. A message refused (too long, empty, an attachment
not the user's, rate, budget, busy) is a stream of one `error` event, which ChatKit shows,
with nothing saved or echoed; so is a body over DATA_UPLOAD_MAX_MEMORY_SIZE (only a message is that
large). After a stream's first event, failures are ChatKit `error` events.
"""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from chatkit.server import StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import ChatKitReq, ErrorEvent, ThreadsCustomActionReq, is_streaming_req
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import TypeAdapter, ValidationError

from chat import errors, outage, selectors
from chat.api import request_auth
from chat.chatkit.server import EngineChatKitServer
from chat.chatkit.store import RequestContext, Unsupported
from chat.errors import ChatError
from chat.standing import Standing

logger = logging.getLogger(__name__)

# What the package routes but this backend does not offer: refused up front, with a reason.
UNSUPPORTED = {
    "input.transcribe": "Dictation is not supported.",
    "threads.custom_action": "Widget actions are not supported; the one action is `continue`.",
    "threads.sync_custom_action": "Widget actions are not supported.",
    "threads.add_client_tool_output": "Client tools are not supported.",
    "threads.add_structured_input": "Structured input is not supported.",
}

_REQUEST = TypeAdapter(ChatKitReq)


@functools.cache
def server() -> EngineChatKitServer:
    return EngineChatKitServer()


@csrf_exempt  # request_auth.authenticate checks CSRF (or Origin) for session requests
@require_POST
async def chatkit(request: HttpRequest) -> HttpResponse:
    authenticated = await request_auth.authenticate(request)
    if isinstance(authenticated, HttpResponse):
        return authenticated
    user, credential = authenticated
    try:
        body = request.body
    except RequestDataTooBig:
        size = request.META.get("CONTENT_LENGTH")
        return _refused(
            f"The request is {size} bytes; the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}."
        )
    try:
        asked = _REQUEST.validate_json(body)
    except ValidationError as exc:
        return ChatError("bad_request", _invalid(exc)).response()
    if (reason := UNSUPPORTED.get(asked.type)) is not None and not _continues(asked):
        return ChatError("bad_request", reason).response()
    if not await _may_stream(asked, user):
        # Refused here, not by the store inside the package's stream, which would log a
        # traceback for every probe of another user's thread.
        return request_auth.detail("No such thread.", 404)
    context = RequestContext(
        user=user,
        time_zone=asked.metadata.get("time_zone"),
        base_url=request.build_absolute_uri("/"),
        secret=credential.secret,
    )
    # A stream counts among the user's sockets while it lasts, and ends when what opened it
    # stops holding (logout): as a dropped request, which stops its reply.
    standing = Standing(credential, transport="chatkit")
    if is_streaming_req(asked) and not await standing.open():
        return _refused(
            f"At most {settings.MAX_SOCKETS_PER_USER} sockets and streams open at once; close one."
        )
    started: _Pump | HttpResponse | None = None
    try:
        started = await _first_event(asked, context, standing)
    finally:
        if not isinstance(started, _Pump):
            await standing.close()  # no stream: nothing stays open
    if isinstance(started, HttpResponse):
        return started
    pump = started
    response = StreamingHttpResponse(pump.chunks(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"
    return response


async def _first_event(
    asked: ChatKitReq, context: RequestContext, standing: Standing
) -> "_Pump | HttpResponse":
    """The package's answer: JSON, or a stream whose first event has come (what fails before
    it is an HTTP error, never a broken stream)."""
    pump = None
    try:
        result = await server().process_request(asked, context)
        if not isinstance(result, StreamingResult):
            return HttpResponse(result.json, content_type="application/json")
        pump = _Pump(aiter(result), standing)
        context.send_now = pump.send  # before the stream's first step: set when it runs
        await pump.first()
        return pump
    except StopAsyncIteration:
        # A retry after an item the thread's items (its active path) do not hold: another
        # thread's, another user's, another branch's.
        return request_auth.detail("No such message on the branch this thread shows.", 404)
    except NotFoundError as exc:
        return request_auth.detail(str(exc) or "Not found.", 404)
    except (Unsupported, ValueError) as exc:
        return ChatError("bad_request", str(exc)).response()
    except ChatError as exc:
        return exc.response()
    except asyncio.CancelledError:
        if pump is not None:
            pump.stop()
        raise
    except Exception:
        return errors.unexpected(f"ChatKit request {asked.type}").response()


def _continues(asked: ChatKitReq) -> bool:
    """Whether the request is the one custom action offered: `continue` a reply the token
    limit cut (chat/chatkit/server.py)."""
    return isinstance(asked, ThreadsCustomActionReq) and asked.params.action.type == "continue"


async def _may_stream(asked: ChatKitReq, user: Any) -> bool:
    """Whether a streaming request names no thread, or one of the user's own."""
    thread_id = getattr(getattr(asked, "params", None), "thread_id", None)
    if not is_streaming_req(asked) or thread_id is None:
        return True
    found = await outage.db(
        f"checking thread {thread_id}",
        selectors.thread_get_for_user,
        user=user,
        thread_id=str(thread_id),
    )
    return found is not None


_END = object()
_LOST = object()  # what opened the stream no longer holds
_QUIET = object()  # no event for SSE_HEARTBEAT_SECONDS: time for a heartbeat


class _Pump:
    """The package's event stream, driven by one task of its own and handed over a queue, so
    the response can send a heartbeat comment while no event comes (a proxy's idle timeout
    would cut the request, and a cut request stops its reply). One task, because the package
    sets context variables in one step of the stream and resets them in a later one.

    When the response ends early (the client went), the task is cancelled: the package's
    `handle_stream_cancelled` then stops the reply, as ChatKit's Stop does.

    The heartbeat is one timer per stream that looks, every SSE_HEARTBEAT_SECONDS, whether an
    event came meanwhile, not a timeout on each wait (`asyncio.wait_for` makes a task for
    every event: docs/performance.md, "ChatKit beside SSE").
    """

    def __init__(self, events: AsyncIterator[bytes], standing: Standing) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.task = self.loop.create_task(self._run(events), name="chatkit")
        self.first_chunk = b""
        self.last_event = self.loop.time()
        self.beat: asyncio.TimerHandle | None = None
        self.standing = standing
        standing.on_lost = self._lost

    async def _lost(self) -> None:
        self.queue.put_nowait(_LOST)

    async def _run(self, events: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in events:
                self.last_event = self.loop.time()
                self.queue.put_nowait(chunk)
        except Exception as exc:  # the package logged it; the stream just ends
            self.queue.put_nowait(exc)
        else:
            self.queue.put_nowait(_END)

    async def first(self) -> bytes:
        item = await self.queue.get()
        if item is _END or item is _LOST:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        self.first_chunk = item  # type: ignore[assignment]
        return self.first_chunk

    def send(self, chunk: bytes) -> None:
        """An event encoded already (a text delta), in its turn among the package's."""
        self.last_event = self.loop.time()
        self.queue.put_nowait(chunk)

    def _heartbeat(self) -> None:
        """A heartbeat's turn when no event came for SSE_HEARTBEAT_SECONDS; then look again
        that long after the last event."""
        every = settings.SSE_HEARTBEAT_SECONDS
        quiet = self.loop.time() - self.last_event
        if quiet >= every:
            self.queue.put_nowait(_QUIET)
            self.last_event, quiet = self.loop.time(), 0.0
        self.beat = self.loop.call_later(every - quiet, self._heartbeat)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The stream's events, with heartbeats while none comes; it ends with the package's
        stream, or early (a dropped request, a logout), which stops the reply."""
        ended = False
        self.beat = self.loop.call_later(settings.SSE_HEARTBEAT_SECONDS, self._heartbeat)
        try:
            yield self.first_chunk
            while True:
                item = await self.queue.get()
                if item is _QUIET:
                    yield b": heartbeat\n\n"
                    continue
                if item is _LOST:
                    return
                if item is _END or isinstance(item, BaseException):
                    ended = True
                    return
                yield item  # type: ignore[misc]
        finally:
            self.beat.cancel()
            if not ended:
                self.stop()
            await self.standing.close()

    def stop(self) -> None:
        """The request went before its stream ended: the package's stream is cancelled where
        it waits, and its `handle_stream_cancelled` stops the reply."""
        self.task.cancel()


def _refused(message: str) -> HttpResponse:
    """A request refused as ChatKit shows a refusal: a stream of one `error` event (ChatKit
    shows only a generic failure for an HTTP error)."""
    event = ErrorEvent(message=message, allow_retry=False).model_dump_json(exclude_none=True)
    return HttpResponse(
        f"data: {event}\n\n".encode(), content_type="text/event-stream; charset=utf-8"
    )


def _invalid(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "the request"
    return f"Not a ChatKit request: {where}: {first.get('msg', 'invalid')}."[:500]
