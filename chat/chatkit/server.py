"""The `openai-chatkit` package's `ChatKitServer`, whose replies are the engine's replies.

`respond` does what a WebSocket's `start` does: it subscribes to the thread, asks the
generation service for a reply (`reply_start`, or `reply_retry` for "retry after item"), and
turns that reply's frames into ChatKit events, one text delta per `token` frame. So a ChatKit
reply is coalesced, checkpointed, counted against the user's limits and token budget, seen
live by every socket on the thread (on any process), stopped by their `stop`, and saved with
its status and metrics, exactly as any other.

ChatKit stops a reply by dropping its request (its Stop button aborts the fetch): the package
then calls `handle_stream_cancelled`, which stops this request's reply through the engine,
keeping the text shown. ChatKit has no way to resume a stream, so a dropped request is a stop.
"""

import uuid
from collections.abc import AsyncIterator
from typing import Any

from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    NoticeEvent,
    ProgressUpdateEvent,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)
from django.utils import timezone

from chat import frames, generation, services
from chat.chatkit import items
from chat.chatkit.store import DjangoStore, RequestContext
from chat.errors import ChatError
from chat.subscription import Subscription

# How long a stream waits for a frame before it checks, from the reply's record, that none
# was missed (a reply that ended unseen is finished from what was saved).
IDLE_SECONDS = 10.0

STOPPED_NOTICE = "The reply was stopped; the text shown is kept."


class EngineChatKitServer(ChatKitServer[RequestContext]):
    """ChatKit requests served from our tables, every reply written by our engine."""

    def __init__(self) -> None:
        super().__init__(store=DjangoStore())

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is None:
            raise CustomStreamError("Nothing to answer: send a message.", allow_retry=False)
        new = context.asked.pop(input_user_message.id, None) is not None
        async with Subscription(thread.id) as subscription:
            try:
                started = await _begin(thread, input_user_message, context, new=new)
            except ChatError as refused:
                if new:  # it was never saved: take it back off the user's screen
                    yield ThreadItemRemovedEvent(item_id=input_user_message.id)
                raise CustomStreamError(refused.message, allow_retry=refused.recoverable) from None
            context.thread_id, context.reply_id = thread.id, started.reply_id
            if new and not thread.title:  # the title the engine gave it (the package sends it)
                thread.title = services.title_from_text(items.user_text(input_user_message))
            reply = ReplyEvents(thread, started.reply_id)
            async for frame in _reply_frames(subscription, reply, replay=started.duplicate):
                for event in reply.of(frame):
                    yield event
            if reply.failure is not None:
                raise reply.failure

    async def add_feedback(
        self, thread_id: str, item_ids: list[str], feedback: Any, context: RequestContext
    ) -> None:
        """Accepted, not stored; for the user's own threads only."""
        await self.store.load_thread(thread_id, context)

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: RequestContext
    ) -> None:
        """The request was dropped (ChatKit's Stop, or the connection went): stop this
        request's reply through the engine, which saves the text shown, as `cancelled`.
        Nothing else is written: the package's own handling would save a second copy."""
        context.stop_reply()


async def _begin(
    thread: ThreadMetadata, message: UserMessageItem, context: RequestContext, *, new: bool
) -> generation.StartResult:
    if new:
        return await generation.reply_start(
            user_id=context.user_id,
            thread_id=thread.id,
            text=items.user_text(message),
            client_id=message.id,
            message_id=_item_uuid(message.id),
            time_zone=context.time_zone,
        )
    return await generation.reply_retry(
        user_id=context.user_id,
        thread_id=thread.id,
        message_id=message.id,
        time_zone=context.time_zone,
    )


async def _reply_frames(
    subscription: Subscription, reply: "ReplyEvents", *, replay: bool
) -> AsyncIterator[dict[str, Any]]:
    """The reply's frames until it ends: as they come, after what it said already when this
    is a repeat (`replay`). When none comes for IDLE_SECONDS, or one comes past a gap in
    `seq`, those its record says were missed. A reply whose record is gone (its frames
    rebuilt from the saved message, numbered afresh) ends as it was saved, so no stream waits
    for a frame that will never come."""
    pending = replay
    while not reply.ended:
        frame = None if pending else await subscription.next(IDLE_SECONDS)
        pending = False
        if frame is not None and not reply.skips(frame):
            yield frame
            continue
        recorded = await generation.reply_frames(
            thread_id=subscription.thread_id, reply_id=reply.reply_id
        )
        for frame in recorded:
            yield frame  # ReplyEvents passes over what it has seen
        if not reply.ended and recorded and frames.is_terminal(recorded[-1]):
            reply.text = "".join(f["token"] for f in recorded if f["type"] == "token")
            yield {**recorded[-1], "seq": reply.seq + 1}


def _item_uuid(item_id: str) -> uuid.UUID:
    return uuid.UUID(item_id)  # made by DjangoStore.generate_item_id


class ReplyEvents:
    """One reply's frames as ChatKit events: an assistant message item added on `start`, a
    text delta per `token`, progress while a tool runs, and the item done on its end."""

    def __init__(self, thread: ThreadMetadata, reply_id: str) -> None:
        self.thread_id = thread.id
        self.reply_id = reply_id
        self.created_at = timezone.now()
        self.text = ""
        self.seq = -1
        self.ended = False
        self.failure: CustomStreamError | None = None

    def skips(self, frame: dict[str, Any]) -> bool:
        """Whether the frame, of this reply, comes after a gap (frames were missed)."""
        return frame.get("message_id") == self.reply_id and frame.get("seq", -1) > self.seq + 1

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
