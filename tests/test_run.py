"""run.py: one reply's run, as its users see it. The text they were shown is the text saved,
however the reply ends (the model's end, a failure, a timeout, Stop, its process going away);
its frames are numbered from 0 without a gap and kept in the live record, so a late tab
replays exactly what the others saw; it is charged the tokens it spent.

Each reply is begun through the engine's one entry (generation.reply_begin) and watched as a
subscriber of its thread, with the stub as the model."""

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as redis
from channels.db import database_sync_to_async

from chat import frames
from chat.engine import broadcast, generation, run
from chat.models import Message, Thread
from tests.conftest import _close_layer, _use_layer
from tests.helpers import new_thread, reply_text

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def alice(django_user_model):
    """A user who never logs in: no password to hash (half a second a test)."""
    return django_user_model.objects.create_user(username="alice")


class Watcher:
    """A subscriber of one thread: every frame published to it, in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        self.received.append(frame)
        self._arrived.set()

    async def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
    ) -> list[dict[str, Any]]:
        """The frames so far, once `done` holds of them."""
        async with asyncio.timeout(timeout):
            while not done(self.received):
                self._arrived.clear()
                await self._arrived.wait()
        return self.received

    async def end(self) -> list[dict[str, Any]]:
        """The reply's frames (those with a `seq`), up to and including the terminal one."""
        await self.until(lambda got: any(frames.is_terminal(f) for f in got))
        return [f for f in self.received if "seq" in f]


def tokens_shown(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda got: sum(f["type"] == "token" for f in got) >= count


async def begin(user, message: str) -> tuple[Thread, Watcher]:
    """Begin a reply to `message` on a new thread (titled: no title work follows it)."""
    thread = await new_thread(user, "titled")
    watcher = Watcher()
    await broadcast.hub().subscribe(str(thread.id), watcher)
    await generation.reply_begin(
        user_id=user.pk,
        thread_id=str(thread.id),
        ask=generation.ask_for({"command": "start", "message": message}),
    )
    return thread, watcher


@database_sync_to_async
def saved_reply(thread: Thread) -> Message:
    return thread.messages.filter(role="assistant").get()


def running(thread: Thread) -> run.Run:
    return generation.registry().runs[str(thread.id)]


def received_so_far(thread: Thread) -> str:
    """The text the thread's run has received, shown or not yet (the run's own state)."""
    stream = running(thread).stream
    return "" if stream is None else stream.content + stream.pending.pending


def seqs(received: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in received]


@pytest.mark.parametrize(
    "script, settings_change, code",
    [
        ({"tokens": ["a", "b", "c"] * 100, "delay_ms": 20}, {"STREAM_TIMEOUT": 0.5}, "timeout"),
        ({"tokens": ["a", "b", "c"], "stall_after": 2}, {"STREAM_IDLE_TIMEOUT": 0.5}, "timeout"),
        ({"tokens": ["a", "b", "c"], "error_after": 2}, {}, "provider_error"),
        ({"tokens": ["a", "b", "c"], "drop_after": 2}, {}, "provider_error"),
    ],
    ids=["whole-reply timeout", "provider stall", "error after first token", "dropped stream"],
)
async def test_a_failing_reply_ends_in_a_terminal_status_with_the_shown_text_saved(
    stub, memory_layer, alice, settings, script, settings_change, code
):
    for name, value in settings_change.items():
        setattr(settings, name, value)
    stub.script("fail-case", **script)
    thread, watcher = await begin(alice, "fail-case")
    received = await watcher.end()
    reply = await saved_reply(thread)

    end = received[-1]
    assert end["type"] == "error" and end["code"] == code and end["message_id"] == str(reply.id)
    assert seqs(received) == list(range(len(received))), "numbered from 0, the end included"
    assert reply.status == "error" and reply.error_code == code
    assert reply.content == reply_text(received) != ""
    assert reply.completed_at is not None and reply.elapsed_ms is not None
    assert reply.token_count > 0, "what it showed is charged (one per delta: no usage came)"
    asked = await database_sync_to_async(thread.messages.get)(role="user")
    assert asked.content == "fail-case" and asked.status == "complete"


async def test_a_fast_reply_is_sent_in_frames_of_buffer_size_characters(
    stub, memory_layer, alice, settings
):
    settings.BUFFER_SIZE, settings.FLUSH_INTERVAL_MS = 6, 60_000
    stub.script("fast", tokens=["ab"] * 10, delay_ms=5)
    thread, watcher = await begin(alice, "fast")
    received = await watcher.end()
    reply = await saved_reply(thread)
    texts = [f["token"] for f in received if f["type"] == "token"]
    assert "".join(texts) == reply.content == "ab" * 10
    assert all(len(text) >= 6 for text in texts[:-1]), texts
    assert len(texts) <= 4, "20 characters: at most three full frames and the rest"


async def test_a_slow_reply_is_sent_a_delta_at_a_time_flush_interval_ms_after_it_came(
    stub, memory_layer, alice, settings
):
    settings.BUFFER_SIZE, settings.FLUSH_INTERVAL_MS = 1000, 20
    stub.script("slow", tokens=["one ", "two ", "three"], delay_ms=150)
    _, watcher = await begin(alice, "slow")
    received = await watcher.end()
    assert [f["token"] for f in received if f["type"] == "token"] == ["one ", "two ", "three"]


async def test_text_received_but_not_yet_shown_when_stop_comes_is_shown_then_saved(
    stub, memory_layer, alice, settings
):
    # Nothing is flushed on its own: whatever is shown, the end of the reply flushed.
    settings.BUFFER_SIZE, settings.FLUSH_INTERVAL_MS = 100_000, 3_600_000
    stub.script("held back", tokens=["w0 ", "w1 ", "w2 ", "w3 "], stall_after=3)
    thread, watcher = await begin(alice, "held back")
    async with asyncio.timeout(10):
        while received_so_far(thread) != "w0 w1 w2 ":  # noqa: ASYNC110 (nothing announces it)
            await asyncio.sleep(0.01)
    assert await generation.reply_stop(thread_id=str(thread.id))
    received = await watcher.end()
    reply = await saved_reply(thread)

    assert [(f["type"], f["seq"]) for f in received] == [
        ("start", 0),
        ("token", 1),
        ("complete", 2),
    ]
    assert received[-1]["status"] == "cancelled" and reply.status == "cancelled"
    assert received[1]["token"] == reply.content == "w0 w1 w2 "


@pytest.mark.parametrize("how", ["drained", "cancelled"])
async def test_a_reply_cut_short_by_its_process_ending_is_saved_interrupted_with_the_text_shown(
    stub, memory_layer, alice, how
):
    """A drain (SIGTERM) that runs out of time, or the event loop cancelling the task."""
    stub.script("cut short", tokens=[f" w{i}" for i in range(200)], delay_ms=10)
    thread, watcher = await begin(alice, "cut short")
    await watcher.until(tokens_shown(3))
    task = running(thread).task
    if how == "drained":
        await generation.registry().drain(0)
    else:
        task.cancel()
    received = await watcher.end()
    with pytest.raises(asyncio.CancelledError) if how == "cancelled" else contextlib.nullcontext():
        await task
    reply = await saved_reply(thread)

    end = received[-1]
    assert end["type"] == "error" and end["code"] == "interrupted" and end["recoverable"]
    assert seqs(received) == list(range(len(received)))
    assert reply.status == "interrupted"
    assert reply.content == reply_text(received) != ""


async def test_a_reply_is_charged_the_providers_count_and_shows_the_metrics_it_saved(
    stub, memory_layer, alice
):
    stub.script("count me", tokens=["a", "b", "c"], usage={"completion_tokens": 7})
    thread, watcher = await begin(alice, "count me")
    received = await watcher.end()
    reply = await saved_reply(thread)

    assert reply.token_count == 7, "the provider's count, not the three deltas"
    assert received[-1]["metrics"]["totalTokens"] == 7
    assert frames.message_object(reply)["metrics"] == received[-1]["metrics"], (
        "after a reload the page shows the same line under the reply"
    )
    assert reply.first_token_ms is not None and reply.elapsed_ms >= reply.first_token_ms


def without_ts(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**f, "ts": 0} for f in received]  # a replay stamps its frames anew


async def test_every_frame_sent_is_in_the_live_record_so_a_late_tab_replays_the_same(
    stub, layer, alice
):
    stub.script("recorded", tokens=[f"t{i} " for i in range(30)], delay_ms=2)
    thread, watcher = await begin(alice, "recorded")
    received = await watcher.end()

    assert seqs(received) == list(range(len(received)))
    replayed = await generation.thread_replay(
        thread_id=str(thread.id), message_id=received[0]["message_id"], after_seq=-1
    )
    assert without_ts(replayed) == without_ts(received)


@pytest.mark.redis
async def test_a_live_record_lost_mid_reply_is_written_back_whole(stub, redis_url, settings, alice):
    """Redis restarted empty while the reply streamed: a tab opened afterwards still replays
    every frame, and the reply still ends where the others saw it end."""
    _use_layer(settings, redis_url, "pubsub")
    client = redis.Redis.from_url(redis_url)
    try:
        stub.script("lost record", tokens=[f"t{i} " for i in range(60)], delay_ms=10)
        thread, watcher = await begin(alice, "lost record")
        await watcher.until(tokens_shown(3))
        await client.flushdb()
        received = await watcher.end()
        reply = await saved_reply(thread)

        assert received[-1]["type"] == "complete" and reply.status == "complete"
        assert seqs(received) == list(range(len(received)))
        assert reply.content == reply_text(received) == "".join(f"t{i} " for i in range(60))
        replayed = await generation.thread_replay(
            thread_id=str(thread.id), message_id=str(reply.id), after_seq=-1
        )
        assert without_ts(replayed) == without_ts(received)
    finally:
        await client.aclose()
        await _close_layer()
