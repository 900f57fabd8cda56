"""broadcast.py: a frame reaches each subscriber of its topic once, on this process directly
and on another through Redis, and never the subscribers of another topic."""

import asyncio
import json

import pytest

from chat import runtime
from chat.engine import live
from chat.engine.broadcast import Hub, user_topic
from tests.conftest import REDIS_TEST_URL, require, tcp_open

pytestmark = pytest.mark.asyncio


class Seen:
    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.arrived = asyncio.Event()

    async def deliver(self, frame: dict, text: str) -> None:
        self.frames.append(frame)
        self.arrived.set()


async def test_a_frame_reaches_its_topics_subscribers_once_and_no_one_else():
    hub = Hub()
    mine, other, gone = Seen(), Seen(), Seen()
    await hub.subscribe("t-1", mine)
    await hub.subscribe("t-2", other)
    await hub.subscribe("t-1", gone)
    hub.unsubscribe("t-1", gone)
    await hub.publish("t-1", {"type": "token", "seq": 1})
    assert mine.frames == [{"type": "token", "seq": 1}]
    assert other.frames == [] and gone.frames == []
    assert user_topic(7) == "user:7" != user_topic(8)


@pytest.mark.redis
async def test_another_process_hears_a_frame_through_redis_and_the_publisher_not_twice():
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    a, b = runtime.connect_redis(REDIS_TEST_URL), runtime.connect_redis(REDIS_TEST_URL)
    here, there = Hub(a), Hub(b)
    on_a, on_b = Seen(), Seen()
    try:
        await here.subscribe("t-redis", on_a)
        await there.subscribe("t-redis", on_b)
        await here.publish("t-redis", {"type": "token", "seq": 1})
        await asyncio.wait_for(on_b.arrived.wait(), 5)
        await asyncio.sleep(0.2)  # time for an echo to come back to A, if one would
        assert on_a.frames == on_b.frames == [{"type": "token", "seq": 1}]
    finally:
        await here.close()
        await there.close()
        await a.aclose()
        await b.aclose()
        await runtime.close()


@pytest.mark.redis
async def test_frames_recorded_together_reach_the_other_process_as_sent_and_before_the_end():
    """A batch of frames from the record (live.py) is handed to the other process's
    subscribers with each frame's text as it was sent, in order, and only to the threads'
    own subscribers; the terminal frame published after them on the thread's channel comes
    after them."""
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    a, b = runtime.connect_redis(REDIS_TEST_URL), runtime.connect_redis(REDIS_TEST_URL)
    here, there = Hub(a), Hub(b)
    store = live.RedisStore(a)
    watched, unwatched, texts = Seen(), Seen(), []

    async def deliver(frame: dict, text: str) -> None:
        texts.append(text)
        await Seen.deliver(watched, frame, text)

    watched.deliver = deliver
    threads = ("t-batch-1", "t-batch-2", "t-batch-3")
    try:
        await there.subscribe(threads[0], watched)
        await there.subscribe(threads[2], watched)
        await here.subscribe(threads[1], unwatched)  # served by the publisher only
        for thread_id in threads:
            await a.delete(*store._keys(thread_id))
            assert await store.claim(thread_id=thread_id, message_id="r", owner="o", model="m")
        sent = {}
        for seq in (1, 2):
            appends = []
            for thread_id in threads:
                frame = {"type": "token", "message_id": f"r-{thread_id}", "seq": seq}
                frame["token"] = f"{thread_id} \u2028 {seq}"
                text = json.dumps(frame, ensure_ascii=False)
                sent[(thread_id, seq)] = text
                line = here.announcement(thread_id, frame, text)
                appends.append(
                    store.append(
                        thread_id=thread_id, message_id="r", seq=seq, text="x", announce=line
                    )
                )
            assert all(await asyncio.gather(*appends))
        await here.publish(threads[0], {"type": "complete", "message_id": "r-t-batch-1"})
        while len(watched.frames) < 5:
            watched.arrived.clear()
            await asyncio.wait_for(watched.arrived.wait(), 5)
        await asyncio.sleep(0.2)  # time for a frame that should not come
        expected = [sent[(threads[0], 1)], sent[(threads[2], 1)]]
        expected += [sent[(threads[0], 2)], sent[(threads[2], 2)]]
        assert texts[:4] == expected
        assert [dict(frame) for frame in watched.frames[:4]] == [json.loads(t) for t in expected]
        assert watched.frames[4]["type"] == "complete" and len(watched.frames) == 5
        assert unwatched.frames == [], "the publisher's own batch is not delivered again"
    finally:
        await here.close()
        await there.close()
        await a.aclose()
        await b.aclose()
        await runtime.close()
