"""subscription.py: the one subscriber every transport uses. The filter it applies, what it
holds until a `ready` or a replay, push and pull, the thread list of a user's other threads,
and how following a reply catches up on frames that were lost."""

import asyncio
import json

import pytest
import pytest_asyncio

from chat import frames, runtime
from chat.engine import broadcast, generation
from chat.engine.subscription import FrameFilter, Subscriber

REPLY = "r-1"


def tokens(*texts: str, first_seq: int = 1) -> list[dict]:
    return [
        frames.token(message_id=REPLY, seq=first_seq + i, text=text) for i, text in enumerate(texts)
    ]


def complete(seq: int) -> dict:
    metrics = frames.metrics(tokens=2, elapsed_ms=10, first_token_ms=1)
    return frames.complete(message_id=REPLY, seq=seq, status="complete", metrics=metrics)


def test_each_frame_of_a_reply_passes_once_and_frames_before_a_snapshot_are_dropped():
    kept = FrameFilter()
    kept.covered("r", 2)  # a snapshot up to seq 2 was applied
    frames_ = [{"message_id": "r", "seq": n} for n in (1, 2, 3, 3, 4)]
    assert [kept.admit(f) for f in frames_] == [False, False, True, False, True]
    assert kept.admit({"type": "thread"}), "a frame of no reply always passes"
    assert kept.admit({"message_id": "other", "seq": 0}), "each reply counts on its own"


@pytest_asyncio.fixture
async def hub_closed():
    yield
    await runtime.close()


@pytest.mark.asyncio
async def test_a_pull_gets_published_frames_after_its_ready_and_an_interrupt_ends_its_wait(
    monkeypatch, hub_closed
):
    async def snapshot(*, thread_id):
        # While the snapshot is read, a frame it already covers and a newer one arrive.
        await broadcast.hub().publish("t-1", tokens("a")[0], remote=False)
        await broadcast.hub().publish("t-1", tokens("b", first_seq=2)[0], remote=False)
        return {"message_id": REPLY, "seq": 1, "content": "a"}

    monkeypatch.setattr(generation, "thread_reap", _nothing)
    monkeypatch.setattr(generation, "thread_snapshot", snapshot)
    async with Subscriber("t-1") as subscriber:
        await subscriber.ready()
        ready = await subscriber.next(1)
        assert ready["type"] == "ready" and ready["active"]["content"] == "a"
        assert (await subscriber.next(1))["token"] == "b", "the snapshot's frame is not doubled"
        waiting = asyncio.create_task(subscriber.next(3600))
        await asyncio.sleep(0)
        await subscriber.interrupt()
        assert await asyncio.wait_for(waiting, 1) is None
    assert "t-1" not in broadcast.hub().local, "leaving leaves the hub"


async def _nothing(**kwargs):
    return None


@pytest.mark.asyncio
async def test_a_push_sends_ready_first_and_other_threads_list_frames_but_not_its_own(
    monkeypatch, hub_closed
):
    sent: list[dict] = []

    async def push(frame, text):
        assert json.loads(text) == frame
        sent.append(frame)

    async def snapshot(*, thread_id):
        await broadcast.hub().publish("t-1", tokens("late")[0], remote=False)
        return None

    monkeypatch.setattr(generation, "thread_reap", _nothing)
    monkeypatch.setattr(generation, "thread_snapshot", snapshot)
    user_topic = broadcast.user_topic(7)
    other = {"type": "thread", "thread": {"id": "t-2", "title": "Other"}}
    own = {"type": "thread", "thread": {"id": "t-1", "title": "Own"}}
    async with Subscriber("t-1", user_id=7, push=push) as subscriber:
        await broadcast.hub().publish(user_topic, other, remote=False)  # held until ready
        await subscriber.ready()
        await broadcast.hub().publish(user_topic, own, remote=False)  # comes on t-1's topic
        await broadcast.hub().publish(user_topic, {"type": "credentials"}, remote=False)
        await broadcast.hub().publish(user_topic, {"type": "thread_deleted", "thread_id": "t-3"})
    assert [f["type"] for f in sent] == ["ready", "thread", "token", "thread_deleted"]
    assert sent[1]["thread"]["id"] == "t-2"


class Record:
    """generation.reply_frames, as a test sets it: the reply's record, or its saved message."""

    def __init__(self, monkeypatch, frames_: list[dict]) -> None:
        self.frames = frames_
        monkeypatch.setattr(generation, "reply_frames", self.read)

    async def read(self, *, thread_id, reply_id):
        assert reply_id == REPLY
        return self.frames


async def followed(subscriber: Subscriber, arriving: list[dict], *, replay=False) -> list[dict]:
    for frame in arriving:
        await subscriber.deliver(frame, json.dumps(frame))
    return [
        frame
        async for frame in subscriber.follow(REPLY, replay=replay, idle=0.01)
        if frame is not None
    ]


def text_of(frames_: list[dict]) -> str:
    return "".join(f["token"] for f in frames_ if f["type"] == "token")


@pytest.mark.asyncio
async def test_a_frame_past_a_gap_fills_the_gap_from_the_record(monkeypatch):
    recorded = [frames.start(message_id=REPLY, model="m"), *tokens("a", "b", "c"), complete(4)]
    Record(monkeypatch, recorded)
    arriving = [recorded[0], recorded[1], recorded[3], recorded[4]]  # "b" (seq 2) was lost
    got = await followed(Subscriber("t-1"), arriving)
    assert [f["seq"] for f in got] == [0, 1, 2, 3, 4]
    assert text_of(got) == "abc"


@pytest.mark.asyncio
async def test_a_repeated_start_replays_what_the_reply_said_then_what_follows(monkeypatch):
    recorded = [frames.start(message_id=REPLY, model="m"), *tokens("a", "b")]
    Record(monkeypatch, recorded)
    subscriber = Subscriber("t-1")
    got = await followed(
        subscriber, [recorded[2], *tokens("c", first_seq=3), complete(4)], replay=True
    )
    assert [f["seq"] for f in got] == [0, 1, 2, 3, 4] and text_of(got) == "abc"


@pytest.mark.asyncio
async def test_a_reply_whose_end_was_missed_and_whose_record_is_gone_ends_as_saved(monkeypatch):
    saved = {
        "id": REPLY,
        "role": "assistant",
        "content": "Hello world",
        "status": "complete",
        "client_id": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "model": "m",
        "metrics": frames.metrics(tokens=2, elapsed_ms=10, first_token_ms=1),
    }
    Record(monkeypatch, frames.of_saved_reply(saved))  # numbered afresh: start, token, complete
    shown = [frames.start(message_id=REPLY, model="m"), *tokens("Hel", "lo", " wor")]
    got = await followed(Subscriber("t-1"), shown)
    assert text_of(got) == "Hello world", "the rest of the saved text, not the whole again"
    assert [f["seq"] for f in got] == [0, 1, 2, 3, 4, 5]
    assert got[-1]["type"] == "complete"
