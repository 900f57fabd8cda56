"""One client's view of a thread: the subscriber every transport uses.

A WebSocket, an SSE stream and a ChatKit request each hold a `Subscriber` and only encode what
it hands them. It joins the thread's frames (and, for a user, the thread list's) before any
snapshot is read, holds what arrives while a `ready` or a replay is being made, lets each frame
of a reply through once in `seq` order, and fills a gap from the reply's record. Push or pull:
given `push`, frames are sent as they come (WebSocket); without, the transport pulls them
(`next`, `follow`: SSE and ChatKit).
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chat import frames, outage
from chat.engine import broadcast, generation
from chat.engine.run import ContinuedFrom

Push = Callable[[dict[str, Any], str], Awaitable[None]]

# The thread-list frames a user's other threads send (a thread made, renamed, retitled,
# deleted): a subscriber of one thread shows them too, so its tab's list follows.
_LIST_FRAMES = frozenset({"thread", "thread_deleted"})


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

    def skips(self, frame: dict[str, Any]) -> bool:
        """Whether the frame comes after a gap in its reply (frames were missed)."""
        message_id = frame.get("message_id")
        return (
            message_id is not None
            and "seq" in frame
            and frame["seq"] > self.delivered.get(message_id, -1) + 1
        )


class Subscriber:
    """A thread's frames for one client, from joining to leaving (`async with`).

    Frames are held from the start until the transport says where the client stands: `ready`
    (a snapshot), `replay` (the frames after an event id) or `follow` (a reply it began after
    joining, so it misses nothing).
    """

    def __init__(self, thread_id: str, *, user_id: int | None = None, push: Push | None = None):
        self.thread_id = str(thread_id)
        self.user_id = user_id
        self.filter = FrameFilter()
        self._push = push
        # Pulled frames, each with whether the filter has passed it already (one the
        # subscriber made itself) or is yet to, when pulled. None: an interrupt. A pushing
        # subscriber has none (an idle socket's share of memory).
        self._queue: asyncio.Queue[tuple[dict[str, Any], bool] | None] | None = (
            asyncio.Queue() if push is None else None
        )
        self._held: list[tuple[dict[str, Any], str]] | None = []
        self._list = _ThreadList(self) if user_id is not None else None
        self._joined: list[tuple[str, Any]] = []

    async def __aenter__(self) -> "Subscriber":
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def open(self) -> None:
        """Join the thread (and the user's thread list): from now on no frame is missed."""
        await self._join(self.thread_id, self)
        if self._list is not None:
            await self._join(broadcast.user_topic(self.user_id), self._list)

    def close(self) -> None:
        """Leave: no more frames."""
        hub = broadcast.hub()
        while self._joined:
            hub.unsubscribe(*self._joined.pop())

    async def _join(self, topic: str, subscriber: broadcast.Subscriber) -> None:
        await broadcast.hub().subscribe(topic, subscriber)
        self._joined.append((topic, subscriber))

    # --- what arrives -----------------------------------------------------------------------

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """A frame published to the thread (broadcast.Subscriber)."""
        if self._held is not None:
            self._held.append((frame, text))
        elif self._push is not None:
            if self.filter.admit(frame):
                await self._push(frame, text)
        else:  # kept, and read whole, by the transport that pulls it
            self._queue.put_nowait((broadcast.plain(frame), False))

    async def _emit(self, frame: dict[str, Any], text: str | None = None) -> None:
        """Hand over a frame the subscriber made itself (a `ready`, a replay), unfiltered."""
        if self._push is not None:
            await self._push(frame, json.dumps(frame) if text is None else text)
        else:
            self._queue.put_nowait((frame, True))

    async def _release(self) -> None:
        """Stop holding: what arrived meanwhile follows, through the filter."""
        held, self._held = self._held or [], None
        for frame, text in held:
            await self.deliver(frame, text)

    async def interrupt(self) -> None:
        """End a pull's wait now, as if it timed out (the stream is to end)."""
        if self._queue is not None:
            self._queue.put_nowait(None)

    # --- where the client stands ------------------------------------------------------------

    async def ready(self) -> dict[str, Any]:
        """The thread's `ready` handed over (pushed, or first of the pull), then what arrived
        meanwhile, past its snapshot. Also the answer to `resync`.

        First the thread is reaped: a reply left `streaming` by a process that died is ended
        (its `error` frame comes after this `ready`), so no client is handed a reply that
        nobody will finish.
        """
        if self._held is None:
            self._held = []
        try:
            # Through an outage: a client that asked for `resync` ignores every frame until
            # its `ready` comes, so an error in its place would leave it frozen.
            ready = await outage.retrying(f"ready frame of thread {self.thread_id}", self._ready)
            await self._emit(ready)
            return ready
        finally:
            await self._release()

    async def _ready(self) -> dict[str, Any]:
        await generation.thread_reap(thread_id=self.thread_id)
        active = await generation.thread_snapshot(thread_id=self.thread_id)
        if active is not None:
            self.filter.covered(active["message_id"], active["seq"])
        return frames.ready(thread_id=self.thread_id, active=active)

    async def replay(self, message_id: str | None, after_seq: int) -> bool:
        """The frames of the thread's latest reply after `after_seq` (an SSE Last-Event-ID),
        then what arrived meanwhile. False, holding still, when that reply is no longer
        recorded: the caller starts over from `ready`."""
        replayed = await generation.thread_replay(
            thread_id=self.thread_id, message_id=message_id, after_seq=after_seq
        )
        if replayed is None:
            return False
        if message_id is not None:
            self.filter.covered(message_id, after_seq)
        for frame in replayed:
            if self.filter.admit(frame):
                await self._emit(frame)
        await self._release()
        return True

    # --- pulling ----------------------------------------------------------------------------

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next new frame, or None when `timeout` passes without one (time to heartbeat)
        or the wait was interrupted."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            pulled = await self._pull(left)
            if pulled is None:
                return None
            frame, admitted = pulled
            if admitted or self.filter.admit(frame):
                return frame
        return None

    async def _pull(self, timeout: float) -> tuple[dict[str, Any], bool] | None:
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def follow(
        self, reply_id: str, *, replay: bool, idle: float, since: ContinuedFrom | None = None
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The thread's frames until the reply `reply_id`, begun after joining, ends: after
        what it said already when the start was a repeat (`replay`), or, for a `continue`,
        after where the reply stood (`since`: its text and last `seq` the client has). None
        when `idle` passes without a frame or the wait was interrupted (time to heartbeat, or
        to check the stream may go on).

        When none comes for `idle`, or one comes past a gap in `seq`, the reply's record fills
        in what was missed. A reply whose record is gone (rebuilt from the saved message,
        numbered afresh) ends as it was saved, so no stream waits for a frame that will never
        come.
        """
        await self._release()
        said = ""  # the reply's text handed over so far
        if since is not None:
            self.filter.covered(reply_id, since.seq)
            said = since.content
        first = replay
        while True:
            if first:
                frame, gap, first = None, True, False
            else:
                pulled = await self._pull(idle)
                if pulled is None:
                    yield None
                frame = pulled[0] if pulled is not None else None
                gap = frame is None or (
                    frame.get("message_id") == reply_id and self.filter.skips(frame)
                )
            caught_up = await self._missed(reply_id, said) if gap else []
            if frame is not None:
                caught_up.append(frame)
            for frame in caught_up:
                if not self.filter.admit(frame):
                    continue
                if frame.get("message_id") == reply_id and frame["type"] == "token":
                    said += frame["token"]
                yield frame
                if frame.get("message_id") == reply_id and frames.is_terminal(frame):
                    return

    async def _missed(self, reply_id: str, said: str) -> list[dict[str, Any]]:
        """The reply's frames from its record. When only the saved message is left (numbered
        afresh), its end: the text past `said` and its last frame, numbered on from what was
        handed over."""
        recorded = await generation.reply_frames(thread_id=self.thread_id, reply_id=reply_id)
        seq = self.filter.delivered.get(reply_id, -1)
        if not recorded:
            return []
        tokens = [f for f in recorded if f["type"] == "token"]
        if "".join(f["token"] for f in tokens if f["seq"] <= seq) == said:
            return recorded  # numbered as sent: the filter passes what is new
        if not frames.is_terminal(recorded[-1]):
            return []
        saved = "".join(f["token"] for f in tokens)
        ending = []
        if saved.startswith(said) and len(saved) > len(said):
            seq += 1
            ending.append(frames.token(message_id=reply_id, seq=seq, text=saved[len(said) :]))
        return [*ending, {**recorded[-1], "seq": seq + 1}]


class ThreadList:
    """A user's thread list alone, for a client with no thread open (`/ws/user/`): the
    `thread` and `thread_deleted` frames of all their threads, pushed as they come."""

    def __init__(self, user_id: int, *, push: Push) -> None:
        self.topic = broadcast.user_topic(user_id)
        self._push = push
        self._joined = False

    async def open(self) -> None:
        """Join the user's topic: from now on no list frame is missed."""
        await broadcast.hub().subscribe(self.topic, self)
        self._joined = True

    def close(self) -> None:
        """Leave: no more frames."""
        if self._joined:
            self._joined = False
            broadcast.hub().unsubscribe(self.topic, self)

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """A frame on the user's topic: the list's are pushed, others (`credentials`) not."""
        if frame.get("type") in _LIST_FRAMES:
            await self._push(frame, text)


class _ThreadList:
    """The user's topic, as one subscriber sees it: another thread's list frames."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """(This thread's own list frames come on its topic, so not twice.)"""
        if frame.get("type") not in _LIST_FRAMES:
            return
        about = frame.get("thread_id") or (frame.get("thread") or {}).get("id")
        if about != self.subscriber.thread_id:
            await self.subscriber.deliver(frame, text)
