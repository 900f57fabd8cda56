"""runtime.py: one object per slot and event loop, made on first use, closed in one place:
each slot settles before the background tasks are cancelled, and closes after."""

import asyncio

import pytest

from chat import runtime, tasks

pytestmark = pytest.mark.asyncio


class Owned:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def settle(self, timeout: float) -> None:
        self.log.append("settle")

    async def close(self) -> None:
        self.log.append("close")


async def test_a_slot_is_made_once_per_loop_and_closed_after_settling_and_the_tasks():
    log: list[str] = []
    made = []

    def make() -> Owned:
        made.append(1)
        return Owned(log)

    assert runtime.peek("owned") is None
    first = runtime.slot("owned", make)
    assert runtime.slot("owned", make) is first and made == [1]
    assert runtime.peek("owned") is first

    async def background() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            log.append("task cancelled")

    tasks.background(background(), name="test-background")
    await asyncio.sleep(0)
    await runtime.close()
    assert log == ["settle", "task cancelled", "close"]
    assert runtime.peek("owned") is None, "the next use starts a fresh runtime"


async def test_each_event_loop_has_its_own_slots():
    here = runtime.slot("mine", object)

    def elsewhere() -> object:
        async def other_loop() -> object:
            return runtime.slot("mine", object)

        return asyncio.run(other_loop())

    there = await asyncio.to_thread(elsewhere)
    assert there is not here and runtime.slot("mine", object) is here
    await runtime.close()
