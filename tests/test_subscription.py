"""subscription.py: the filter every subscriber applies, and the subscription of an HTTP
stream, whose wait a stream that must end can cut short."""

import asyncio

import pytest

from chat import runtime
from chat.engine.subscription import FrameFilter, Subscription


def test_each_frame_of_a_reply_passes_once_and_frames_before_a_snapshot_are_dropped():
    kept = FrameFilter()
    kept.covered("r", 2)  # a snapshot up to seq 2 was applied
    frames = [{"message_id": "r", "seq": n} for n in (1, 2, 3, 3, 4)]
    assert [kept.admit(f) for f in frames] == [False, False, True, False, True]
    assert kept.admit({"type": "thread"}), "a frame of no reply always passes"
    assert kept.admit({"message_id": "other", "seq": 0}), "each reply counts on its own"


@pytest.mark.asyncio
async def test_a_subscription_gets_published_frames_and_an_interrupt_ends_its_wait_at_once():
    async with Subscription("t-1") as subscription:
        await subscription.deliver({"message_id": "r", "seq": 0}, "")
        assert (await subscription.next(1))["seq"] == 0
        waiting = asyncio.create_task(subscription.next(3600))
        await asyncio.sleep(0)
        await subscription.interrupt()
        assert await asyncio.wait_for(waiting, 1) is None
    await runtime.close()
