"""broadcast.py: a frame reaches each subscriber of its topic once, on this process directly
and on another through Redis, and never the subscribers of another topic."""

import asyncio

import pytest

from chat import runtime
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
