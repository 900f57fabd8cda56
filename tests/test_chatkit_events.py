"""A reply's frames as ChatKit events (chat/chatkit/server.py), without a server: the
translation, and how a stream ends when it missed its reply's last frames."""

import pytest
from chatkit.errors import CustomStreamError
from chatkit.types import ThreadMetadata
from django.utils import timezone

from chat import frames
from chat.chatkit import server
from chat.engine import generation
from chat.engine.subscription import FrameFilter

THREAD = ThreadMetadata(id="t-1", created_at=timezone.now())
REPLY = "r-1"


def tokens(*texts: str, first_seq: int = 1) -> list[dict]:
    return [
        frames.token(message_id=REPLY, seq=first_seq + i, text=text) for i, text in enumerate(texts)
    ]


def metrics():
    return frames.metrics(tokens=2, elapsed_ms=10, first_token_ms=1)


def translate(received: list[dict]) -> tuple[server.ReplyEvents, list]:
    reply = server.ReplyEvents(THREAD, REPLY)
    return reply, [event for frame in received for event in reply.of(frame)]


def test_a_reply_is_an_item_added_a_delta_per_token_and_the_item_done():
    reply, events = translate(
        [
            frames.start(message_id=REPLY, model="m"),
            *tokens("Hel", "lo"),
            frames.token(message_id="another reply", seq=3, text="not ours"),
            tokens("lo")[0],  # a repeat
            frames.complete(message_id=REPLY, seq=3, status="complete", metrics=metrics()),
        ]
    )
    assert [e.type for e in events] == [
        "thread.item.added",
        "thread.item.updated",  # content part added
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",  # content part done
        "thread.item.done",
    ]
    assert [e.update.delta for e in events[2:4]] == ["Hel", "lo"]
    assert events[-1].item.id == REPLY and events[-1].item.content[0].text == "Hello"
    assert reply.ended and reply.failure is None


def test_a_stopped_reply_ends_with_a_notice_and_a_failed_one_with_its_reason():
    _, events = translate(
        [
            frames.start(message_id=REPLY, model="m"),
            *tokens("Par"),
            frames.complete(message_id=REPLY, seq=2, status="cancelled", metrics=metrics()),
        ]
    )
    assert events[-2].item.content[0].text == "Par"
    assert events[-1].type == "notice" and "stopped" in events[-1].message

    reply, events = translate(
        [
            frames.start(message_id=REPLY, model="m"),
            frames.error(
                code="provider_error",
                message="The model failed.",
                recoverable=True,
                message_id=REPLY,
                seq=1,
            ),
        ]
    )
    assert events[-1].item.content[0].text == "_The model failed._"  # nothing was written
    assert isinstance(reply.failure, CustomStreamError) and reply.failure.allow_retry


class Silent:
    """A subscription whose frames stopped coming (the last ones were lost)."""

    thread_id = THREAD.id

    def __init__(self, frames_first: list[dict]) -> None:
        self.queue = list(frames_first)
        self.filter = FrameFilter()

    async def next(self, timeout: float):
        return self.queue.pop(0) if self.queue else None


@pytest.mark.asyncio
async def test_a_stream_that_missed_the_end_of_a_reply_whose_record_is_gone_ends_as_saved(
    monkeypatch,
):
    saved = {
        "id": REPLY,
        "role": "assistant",
        "content": "Hello world",
        "status": "complete",
        "client_id": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "model": "m",
        "metrics": metrics(),
    }

    async def rebuilt(*, thread_id, reply_id):
        assert (thread_id, reply_id) == (THREAD.id, REPLY)
        return frames.of_saved_reply(saved)  # numbered afresh: start, one token, complete

    monkeypatch.setattr(generation, "reply_frames", rebuilt)
    monkeypatch.setattr(server, "IDLE_SECONDS", 0)
    shown = [frames.start(message_id=REPLY, model="m"), *tokens("Hel", "lo", " wor")]
    reply = server.ReplyEvents(THREAD, REPLY)
    events = [
        event
        async for frame in server._reply_frames(Silent(shown), reply, replay=False)
        for event in reply.of(frame)
    ]
    assert events[-1].type == "thread.item.done"
    assert events[-1].item.content[0].text == "Hello world"
    assert reply.ended


@pytest.mark.asyncio
async def test_a_frame_past_a_gap_fills_the_gap_from_the_record(monkeypatch):
    recorded = [
        frames.start(message_id=REPLY, model="m"),
        *tokens("a", "b", "c"),
        frames.complete(message_id=REPLY, seq=4, status="complete", metrics=metrics()),
    ]

    async def record(*, thread_id, reply_id):
        return recorded

    monkeypatch.setattr(generation, "reply_frames", record)
    arriving = [recorded[0], recorded[1], recorded[3], recorded[4]]  # "b" (seq 2) was lost
    reply = server.ReplyEvents(THREAD, REPLY)
    events = [
        event
        async for frame in server._reply_frames(Silent(arriving), reply, replay=False)
        for event in reply.of(frame)
    ]
    deltas = [
        e.update.delta for e in events if getattr(e, "update", None) and "delta" in e.update.type
    ]
    assert deltas == ["a", "b", "c"]
    assert events[-1].item.content[0].text == "abc"
