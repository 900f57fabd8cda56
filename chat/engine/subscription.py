"""Subscribing to a thread's frames: the filter every subscriber applies, and a subscription
for HTTP streams (SSE), which have no consumer of their own.
"""

import asyncio
from typing import Any

from chat import frames
from chat.engine import broadcast, generation


class FrameFilter:
    """Lets each frame of a reply through once, in `seq` order as received.

    A subscriber first applies a snapshot (or a replay) up to some `seq`; frames at or below
    it that were already on their way through the layer are dropped, so nothing is doubled.
    """

    def __init__(self) -> None:
        self.delivered: dict[str, int] = {}

    def covered(self, message_id: str, seq: int) -> None:
        """The subscriber has the reply's text up to and including `seq`."""
        self.delivered[message_id] = seq

    def admit(self, frame: dict[str, Any]) -> bool:
        """Whether the frame is new to this subscriber (and note it if so)."""
        message_id = frame.get("message_id")
        if message_id is None or "seq" not in frame:
            return True
        if frame["seq"] <= self.delivered.get(message_id, -1):
            return False
        self.delivered[message_id] = frame["seq"]
        return True


async def ready_frame(thread_id: str, frame_filter: FrameFilter) -> dict[str, Any]:
    """The `ready` frame of a thread, its snapshot noted in the subscriber's filter.

    First the thread is reaped: a reply left `streaming` by a process that died is ended
    (its `error` frame reaches the subscriber after this `ready`), so no client is handed a
    reply that nobody will finish.
    """
    await generation.thread_reap(thread_id=thread_id)
    active = await generation.thread_snapshot(thread_id=thread_id)
    if active is not None:
        frame_filter.covered(active["message_id"], active["seq"])
    return frames.ready(thread_id=thread_id, active=active)


class Subscription:
    """A thread's frames for one HTTP stream: joined before any snapshot is read."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = str(thread_id)
        self.filter = FrameFilter()
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def __aenter__(self) -> "Subscription":
        await broadcast.hub().subscribe(self.thread_id, self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        broadcast.hub().unsubscribe(self.thread_id, self)

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """A frame published to the thread (broadcast.Subscriber); `next()` filters it."""
        self._queue.put_nowait(frame)

    async def interrupt(self) -> None:
        """End the wait of `next()` now, as if it timed out (the stream is to end)."""
        self._queue.put_nowait(None)

    async def ready(self) -> dict[str, Any]:
        """The `ready` frame, its snapshot noted in the filter."""
        return await ready_frame(self.thread_id, self.filter)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next new frame, or None when `timeout` passes without one (time to heartbeat)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                frame = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return None
            if frame is None:  # interrupted
                return None
            if self.filter.admit(frame):
                return frame
