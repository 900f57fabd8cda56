"""The `openai-chatkit` package's `ChatKitServer`, whose replies are the engine's replies.

A ChatKit request that asks for a reply does what a WebSocket's `start` does: it subscribes
to the thread, asks the generation service for a reply (`reply_begin`, with a `start`'s
`Ask` in `_ask` for a new message, `ask_retry` in `respond` for "retry after item"), and
turns that reply's frames into ChatKit events, one text delta per `token` frame. So a ChatKit
reply is coalesced, checkpointed, counted against the user's limits and token budget, seen
live by every socket on the thread (on any process), stopped by their `stop`, and saved with
its status and metrics, exactly as any other.

A new message (`threads.create`, `threads.add_user_message`) is begun before anything is
sent or saved (`_ask`): the package's own handling saves the thread and echoes the message
first, so a refusal would leave an empty thread and an echo (two million characters of it,
for a message far over the limit). Here everything the engine refuses (empty, too long,
rate, replies in flight, budget, busy, an attachment not the user's own upload) is refused as
one `error` event, and a new thread is written by the engine, in the transaction of its first
message. The message's attachments (`input.attachments`, ids of our uploads: attachments.py)
are the `start`'s, so the model gets them as from any transport. (This
overrides the package's `_process_streaming_impl` and reuses its `_process_events`: private
names of openai-chatkit 1.6.5, pinned in requirements.txt; tests/test_chatkit.py's refusal
tests fail if an upgrade stops routing new messages here.)

The one custom action offered, `threads.custom_action` `{"type": "continue"}` on a reply the
token limit cut (`_continue`), is the WebSocket's `continue`: the reply's item grows.

ChatKit stops a reply by dropping its request (its Stop button aborts the fetch): the package
then calls `handle_stream_cancelled`, which stops this request's reply through the engine,
keeping the text shown. ChatKit has no way to resume a stream, so a dropped request is a stop.
"""

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ChatKitReq,
    ErrorEvent,
    NoticeEvent,
    Page,
    ProgressUpdateEvent,
    Thread,
    ThreadCreatedEvent,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadStreamEvent,
    UserMessageItem,
    is_streaming_req,
)
from django.utils import timezone

from chat import dbthread, frames, selectors, services
from chat.chatkit import items
from chat.chatkit.attachments import DjangoAttachmentStore
from chat.chatkit.store import DjangoStore, RequestContext
from chat.engine import generation
from chat.engine.run import ContinuedFrom
from chat.engine.subscription import Subscriber
from chat.errors import ChatError

# How long a stream waits for a frame before it checks, from the reply's record, that none
# was missed (Subscriber.follow: a reply that ended unseen is finished from what was saved).
IDLE_SECONDS = 10.0

STOPPED_NOTICE = "The reply was stopped; the text shown is kept."


class EngineChatKitServer(ChatKitServer[RequestContext]):
    """ChatKit requests served from our tables, every reply written by our engine."""

    def __init__(self) -> None:
        super().__init__(store=DjangoStore(), attachment_store=DjangoAttachmentStore())

    async def process_request(
        self, request: ChatKitReq, context: RequestContext
    ) -> StreamingResult | NonStreamingResult:
        """The package's `process`, for a request api/chatkit.py has parsed already: the
        package's own parses the body again with a `TypeAdapter` of the whole request union
        that it builds anew for every request (a schema build: 2.5% of daphne's samples at 80
        ChatKit starts, docs/performance.md)."""
        if is_streaming_req(request):
            return StreamingResult(self._process_streaming(request, context))
        return NonStreamingResult(await self._process_non_streaming(request, context))

    async def _process_streaming_impl(self, request, context: RequestContext):
        """The package's streaming requests, but a new message is ours (`_ask`), and so is
        the one custom action we offer (`_continue`)."""
        if isinstance(request, (ThreadsCreateReq, ThreadsAddUserMessageReq)):
            events = self._ask(request, context)
        elif isinstance(request, ThreadsCustomActionReq):  # api/chatkit.py let only ours by
            events = self._continue(request, context)
        else:
            events = super()._process_streaming_impl(request, context)
        async for event in events:
            yield event

    async def _ask(
        self, request: ThreadsCreateReq | ThreadsAddUserMessageReq, context: RequestContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """A new message: begun by the engine first (with its new thread, in one transaction),
        then the thread and the message shown, then the reply. A refusal is one `error`
        event, with nothing saved and nothing echoed."""
        new = isinstance(request, ThreadsCreateReq)
        asked = request.params.input
        if new:
            thread = ThreadMetadata(
                id=self.store.generate_thread_id(context), created_at=timezone.now()
            )
        else:  # another user's thread is not found: a 404, before any event
            thread = await self.store.load_thread(request.params.thread_id, context)
        message = UserMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            content=asked.content,
            attachments=[],
            quoted_text=asked.quoted_text,
            inference_options=asked.inference_options,
            created_at=timezone.now(),
        )
        async with Subscriber(thread.id) as subscriber:
            try:
                start = {"command": "start", "message": items.user_text(message)}
                if asked.inference_options.model:  # the composer's model choice
                    start["model"] = asked.inference_options.model
                if asked.attachments:  # the user's own uploads, checked as the reply begins
                    start["attachments"] = list(asked.attachments)
                ask = dataclasses.replace(
                    generation.ask_for({**start, "client_id": message.id}),
                    message_id=_item_uuid(message.id),  # the item's id is the message's
                    new_thread_of=context.user_id if new else None,
                )
                started = await generation.reply_begin(
                    user_id=context.user_id,
                    thread_id=thread.id,
                    ask=ask,
                    time_zone=context.time_zone,
                )
            except ChatError as refused:
                yield ErrorEvent(message=refused.message, allow_retry=refused.recoverable)
                return
            for attachment_id in asked.attachments:  # now the message's
                message.attachments.append(await self.store.load_attachment(attachment_id, context))
            if new:
                yield ThreadCreatedEvent(thread=Thread(**thread.model_dump(), items=Page()))
            yield ThreadItemDoneEvent(item=message)
            # The package's reply loop: stream options, thread updates, cancellation, errors.
            async for event in self._process_events(
                thread,
                context,
                lambda: self._reply(thread, subscriber, started, context, asked=message),
            ):
                yield event

    async def _continue(
        self, request: ThreadsCustomActionReq, context: RequestContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The `continue` action: the thread's last reply, cut by the token limit, goes on
        (the WebSocket's `continue`). Its item grows: a text delta per new `token` frame, then
        the item done with the whole text. A refusal is one `error` event, nothing changed."""
        thread = await self.store.load_thread(request.params.thread_id, context)
        payload = request.params.action.payload
        payload = payload if isinstance(payload, dict) else {}
        command = {
            "command": "continue",
            "message_id": request.params.item_id or payload.get("item_id"),
            "client_id": payload.get("client_id"),
        }
        async with Subscriber(thread.id) as subscriber:
            try:
                started = await generation.reply_begin(
                    user_id=context.user_id,
                    thread_id=thread.id,
                    ask=generation.ask_for(command),
                    time_zone=context.time_zone,
                )
            except ChatError as refused:
                yield ErrorEvent(message=refused.message, allow_retry=refused.recoverable)
                return
            async for event in self._process_events(
                thread, context, lambda: self._reply(thread, subscriber, started, context)
            ):
                yield event

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """ "Retry after item": the user message, answered anew (new messages are `_ask`'s)."""
        if input_user_message is None:
            raise CustomStreamError("Nothing to answer: send a message.", allow_retry=False)
        async with Subscriber(thread.id) as subscriber:
            try:
                started = await generation.reply_begin(
                    user_id=context.user_id,
                    thread_id=thread.id,
                    ask=generation.ask_retry(message_id=input_user_message.id),
                    time_zone=context.time_zone,
                )
            except ChatError as refused:
                raise CustomStreamError(refused.message, allow_retry=refused.recoverable) from None
            async for event in self._reply(thread, subscriber, started, context):
                yield event

    async def _reply(
        self,
        thread: ThreadMetadata,
        subscriber: Subscriber,
        started: generation.StartResult,
        context: RequestContext,
        *,
        asked: UserMessageItem | None = None,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The begun reply's events; the thread's title (the package sends it as
        `thread.updated`) when `asked` is the thread's first message."""
        context.thread_id, context.reply_id = thread.id, started.reply_id
        if asked is not None and not thread.title:  # the title the engine gave it
            thread.title = services.title_from_text(items.user_text(asked))
            context.saved_title = thread.title  # saved with the thread: no rename to make
        reply = ReplyEvents(thread, started.reply_id, since=started.continued)
        send_now = context.send_now
        deltas = TextDeltas(started.reply_id, self._serialize) if send_now is not None else None
        following = subscriber.follow(
            started.reply_id, replay=started.duplicate, idle=IDLE_SECONDS, since=started.continued
        )
        async for frame in following:
            if frame is None:
                continue
            if deltas is not None and send_now is not None and reply.takes_token(frame):
                # Straight to the response, past the package's event loop: it has handled
                # every event before this one already (it resumes us only then), and a text
                # delta needs nothing of it (TextDeltas says why).
                send_now(deltas.encoded(frame["token"]))
                continue
            for event in reply.of(frame):
                yield event
        if reply.failure is not None:
            raise reply.failure

    async def add_feedback(
        self, thread_id: str, item_ids: list[str], feedback: Any, context: RequestContext
    ) -> None:
        """ChatKit's thumbs (`positive`, `negative`) on replies of the user's own thread:
        the same feedback as `PUT /api/messages/<id>/feedback/` (tags and comment kept)."""
        await self.store.load_thread(thread_id, context)  # another user's: not found
        rating = {"positive": "up", "negative": "down"}.get(feedback)
        if rating is None:
            raise CustomStreamError("Feedback is positive or negative.", allow_retry=False)
        await dbthread.off_loop(_rate)(context.user, thread_id, item_ids, rating)

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: RequestContext
    ) -> None:
        """The request was dropped (ChatKit's Stop, or the connection went): stop this
        request's reply through the engine, which saves the text shown, as `cancelled`.
        Nothing else is written: the package's own handling would save a second copy."""
        context.stop_reply()


def _rate(user: Any, thread_id: str, item_ids: list[str], rating: str) -> None:
    """Rate each of the thread's replies named, keeping tags and comment given elsewhere."""
    for item_id in item_ids:
        message = selectors.message_get_for_user(user=user, message_id=item_id)
        if message is None or str(message.thread_id) != str(thread_id):
            continue  # not a message of this thread: nothing to rate
        kept = frames.message_object(message).get("feedback") or {}
        given = {"rating": rating, "tags": kept.get("tags", []), "comment": kept.get("comment", "")}
        try:
            services.feedback_set(message=message, user=user, given=given)
        except ChatError:
            continue  # a user message, or a reply still running: ChatKit has no answer for it


class TextDeltas:
    """A reply's text deltas as the package's stream encodes them (`data: <event JSON>`),
    made from a template the package's own serializer wrote, so a delta goes to the response
    without the package's per-event work: a pydantic event built, validated and serialized,
    then handed through four generators (the pending item and thread checks of
    `_process_events` matter only for items and threads, never for a delta; our
    `handle_stream_cancelled` ignores the pending items). At 80 ChatKit streams that work was
    4.5-5.5% of daphne's samples against 0.5-1.8% for SSE's own layers (docs/performance.md).
    """

    MARK = "\x00"

    def __init__(self, reply_id: str, serialize: Callable[[Any], bytes]) -> None:
        update = AssistantMessageContentPartTextDelta(content_index=0, delta=self.MARK)
        whole = serialize(ThreadItemUpdatedEvent(item_id=reply_id, update=update))
        self.head, self.tail = whole.split(json.dumps(self.MARK).encode())
        self.head = b"data: " + self.head
        self.tail += b"\n\n"

    def encoded(self, text: str) -> bytes:
        try:
            quoted = json.dumps(text, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate: escaped, as the frames' JSON does
            quoted = json.dumps(text).encode()
        return self.head + quoted + self.tail


def _item_uuid(item_id: str) -> uuid.UUID:
    return uuid.UUID(item_id)  # made by DjangoStore.generate_item_id


class ReplyEvents:
    """One reply's frames as ChatKit events: an assistant message item added on `start`, a
    text delta per `token`, progress while a tool runs, and the item done on its end."""

    def __init__(
        self, thread: ThreadMetadata, reply_id: str, *, since: ContinuedFrom | None = None
    ) -> None:
        self.thread_id = thread.id
        self.reply_id = reply_id
        self.created_at = timezone.now()
        # A continued reply's item exists: its text so far, its frames after its last `seq`.
        self.text = since.content if since is not None else ""
        self.seq = since.seq if since is not None else -1
        self.ended = False
        self.failure: CustomStreamError | None = None

    def takes_token(self, frame: dict[str, Any]) -> bool:
        """Whether `frame` is this reply's next `token`: if so it is taken (its text added)
        and the caller sends its text delta."""
        if (
            frame.get("type") != "token"
            or frame.get("message_id") != self.reply_id
            or frame["seq"] <= self.seq
        ):
            return False
        self.seq = frame["seq"]
        self.text += frame["token"]
        return True

    def of(self, frame: dict[str, Any]) -> list[ThreadStreamEvent]:
        if frame.get("message_id") != self.reply_id or frame.get("seq", -1) <= self.seq:
            return []
        self.seq = frame["seq"]
        kind = frame["type"]
        if kind == "start":
            return [
                ThreadItemAddedEvent(item=self._item(content=[])),
                self._update(
                    AssistantMessageContentPartAdded(
                        content_index=0, content=AssistantMessageContent(text="")
                    )
                ),
            ]
        if kind == "token":
            self.text += frame["token"]
            return [
                self._update(
                    AssistantMessageContentPartTextDelta(content_index=0, delta=frame["token"])
                )
            ]
        if kind == "tool":
            if frame["status"] != "running":
                return []
            return [ProgressUpdateEvent(icon="sparkle", text=f"Using {frame['name']}…")]
        if not frames.is_terminal(frame):
            return []
        self.ended = True
        text = self.text
        events: list[ThreadStreamEvent] = []
        if kind == "error":
            text = items.reply_text(text, status="error", error_message=frame["message"])
            self.failure = CustomStreamError(frame["message"], allow_retry=frame["recoverable"])
        content = AssistantMessageContent(text=text)
        events.append(
            self._update(AssistantMessageContentPartDone(content_index=0, content=content))
        )
        events.append(ThreadItemDoneEvent(item=self._item(content=[content])))
        if kind == "complete" and frame["status"] == "cancelled":
            events.append(NoticeEvent(level="info", message=STOPPED_NOTICE))
        return events

    def _item(self, *, content: list[AssistantMessageContent]) -> AssistantMessageItem:
        return items.assistant_item(
            item_id=self.reply_id,
            thread_id=self.thread_id,
            created_at=self.created_at,
            content=content,
        )

    def _update(self, update) -> ThreadItemUpdatedEvent:
        return ThreadItemUpdatedEvent(item_id=self.reply_id, update=update)
