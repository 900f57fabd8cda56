"""Sending frames to a thread's subscribers: this process's directly, the others' through Redis.

Every process keeps a hub of its own subscribers (WebSocket consumers, SSE streams) by thread,
and feeds them itself: a frame is serialized once and handed to each, with no channel-layer
round trip per socket. With a shared live store (Redis) the hub also subscribes to a Redis
channel per thread it has subscribers for; a frame goes out to the other processes as one
PUBLISH there, tagged with its process so that the process does not deliver it twice. A
reply's token and tool frames instead go out with their record (live.py): the frames of every
reply recorded in one step as one message on one channel (`live.BATCHED_CHANNEL`, which every
hub with subscribers hears), one line each, the line's header saying the process, thread,
type, reply and `seq`. So the other process reads one message per turn of the publisher, not
one per frame, drops the lines of threads it does not serve without decoding them, and passes
a line's text to its sockets as it came (`Announced`: the frame itself is decoded only for a
subscriber that reads more than its header, a pulling one). Redis delivers one connection's
messages in the order they were published, whatever their channel, so a reply's last token
frames still come before its terminal frame, published after them on the thread's channel.

A frame published here is a wake-up, not the record (live.py): a subscriber that misses one
sees a gap, or hears of it from a heartbeat, and resyncs from the live record.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction

from chat import dbthread, outage, runtime, tasks
from chat.engine import live
from chat.outage import Softly

logger = logging.getLogger(__name__)

# How long a new subscriber waits for Redis to confirm its thread's channel before retrying.
_JOIN_SECONDS = 5
_health = Softly("publishing frames")


class Subscriber(Protocol):
    """Something that shows a thread's frames to a client."""

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """Show the frame (`text` is its JSON); never blocks on the client."""


class Hub:
    """This process's subscribers by thread, and its link to the other processes."""

    def __init__(self, redis: Any = None) -> None:
        """`redis`: the process's Redis client (runtime.redis_client()), None for one process."""
        self.origin = uuid.uuid4().hex
        self.local: dict[str, set[Subscriber]] = {}
        self.remote = _RemoteFrames(self, redis) if redis is not None else None

    async def subscribe(self, thread_id: str, subscriber: Subscriber) -> None:
        """Deliver the thread's frames to `subscriber` from now on, whichever process
        publishes them: once this returns, no later frame can miss it."""
        subscribers = self.local.setdefault(thread_id, set())
        subscribers.add(subscriber)
        if self.remote is not None:
            try:
                await outage.retrying(
                    f"subscribing to thread {thread_id}", lambda: self.remote.join(thread_id)
                )
            except BaseException:
                self.unsubscribe(thread_id, subscriber)
                raise

    def unsubscribe(self, thread_id: str, subscriber: Subscriber) -> None:
        """Stop delivering to `subscriber`."""
        subscribers = self.local.get(thread_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self.local[thread_id]
            if self.remote is not None:
                self.remote.leave(thread_id)

    def envelope(self, text: str) -> str:
        """A frame's text as published to the other processes (tagged with this one)."""
        return f"{self.origin} {text}"

    def announcement(self, thread_id: str, frame: dict[str, Any], text: str) -> str:
        """A reply's frame as one line of a batch (live.py publishes it with its record):
        its header, then its text (JSON: json.dumps escapes every newline)."""
        header = f"{self.origin} {thread_id} {frame['type']} {frame['message_id']}"
        return f"{header} {frame['seq']} {text}"

    async def publish(
        self,
        thread_id: str,
        frame: dict[str, Any],
        *,
        text: str | None = None,
        local: bool = True,
        remote: bool = True,
    ) -> None:
        """Deliver the frame to this process's subscribers (unless `local` is False) and to the
        other processes' (unless `remote` is False); raises if Redis cannot be reached."""
        text = json.dumps(frame) if text is None else text
        if local:
            await self.deliver(thread_id, frame, text)
        if remote and self.remote is not None:
            await self.remote.publish(thread_id, self.envelope(text))

    async def deliver(self, thread_id: str, frame: dict[str, Any], text: str) -> None:
        """Hand the frame to this process's subscribers of the thread."""
        for subscriber in tuple(self.local.get(thread_id, ())):
            try:
                await subscriber.deliver(frame, text)
            except Exception:
                logger.exception("thread %s: a subscriber failed a frame", thread_id)

    async def received(self, thread_id: str, payload: str) -> None:
        """A frame another process published."""
        origin, _, text = payload.partition(" ")
        if origin != self.origin and thread_id in self.local:
            await self.deliver(thread_id, json.loads(text), text)

    async def received_batch(self, payload: str) -> None:
        """Frames another process recorded together (`announcement`s, one a line): each
        handed on as it came, undecoded; the lines of threads served elsewhere skipped."""
        for line in payload.split("\n"):
            origin, thread_id, kind, message_id, seq, text = line.split(" ", 5)
            if origin != self.origin and thread_id in self.local:
                await self.deliver(thread_id, Announced(text, kind, message_id, int(seq)), text)

    async def close(self) -> None:
        """Stop hearing the other processes: the listener ends, its connection is closed."""
        if self.remote is not None:
            await self.remote.close()


class Announced(Mapping):
    """A frame from another process's batch: its header (`type`, `message_id`, `seq`) as
    the line gave it, its text as sent; the rest decoded from the text only when read (a
    pulling subscriber does; a socket sends the text and filters on the header)."""

    __slots__ = ("text", "_header", "_whole")

    def __init__(self, text: str, kind: str, message_id: str, seq: int) -> None:
        self.text = text
        self._header = {"type": kind, "message_id": message_id, "seq": seq}
        self._whole: dict[str, Any] | None = None

    def whole(self) -> dict[str, Any]:
        """The frame decoded, once."""
        if self._whole is None:
            self._whole = json.loads(self.text)
        return self._whole

    def __getitem__(self, key: str) -> Any:
        header = self._header
        return header[key] if key in header else self.whole()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.whole())

    def __len__(self) -> int:
        return len(self.whole())


def plain(frame: Mapping[str, Any]) -> dict[str, Any]:
    """The frame as a dict (an `Announced` one decoded), for code that keeps or encodes it."""
    return frame.whole() if isinstance(frame, Announced) else frame


class _RemoteFrames:
    """The hub's Redis side: one pub/sub connection, a channel per thread with subscribers."""

    def __init__(self, hub: Hub, redis: Any) -> None:
        self.hub = hub
        self.redis = redis
        self.pubsub = redis.pubsub()
        self.joined: set[str] = set()  # channels Redis confirmed (and not left since)
        self.batched = False  # whether live.BATCHED_CHANNEL is subscribed (never left)
        self.joining: dict[str, list[asyncio.Future]] = {}
        self.listener: asyncio.Task | None = None
        # Orders SUBSCRIBE and UNSUBSCRIBE: a leave racing a join can never unsubscribe a
        # channel that has a subscriber again.
        self._commands = asyncio.Lock()

    async def join(self, thread_id: str) -> None:
        """Subscribe to the thread's channel and wait for Redis to confirm it."""
        channel = live.frames_channel(thread_id)
        confirmed = asyncio.get_running_loop().create_future()
        async with self._commands:
            if channel in self.joined:
                return
            self.joining.setdefault(channel, []).append(confirmed)
            # The batches' channel first: Redis confirms in order, so a thread confirmed is
            # one whose frames reach this hub by either channel.
            channels = [channel] if self.batched else [live.BATCHED_CHANNEL, channel]
            await self.pubsub.subscribe(*channels)
            self.batched = True
            if self.listener is None:
                self.listener = tasks.background(self._listen(), name="chat-frames-listener")
        try:
            await asyncio.wait_for(confirmed, _JOIN_SECONDS)
        finally:
            waiting = self.joining.get(channel, [])
            if confirmed in waiting:
                waiting.remove(confirmed)
            if not waiting:
                self.joining.pop(channel, None)
        self.joined.add(channel)

    def leave(self, thread_id: str) -> None:
        """Unsubscribe from the thread's channel, in the background."""
        tasks.background(self._leave(thread_id), name=f"leave-{thread_id}")

    async def _leave(self, thread_id: str) -> None:
        channel = live.frames_channel(thread_id)
        async with self._commands:
            if thread_id in self.hub.local:  # a subscriber came back meanwhile
                return
            self.joined.discard(channel)
            try:
                await self.pubsub.unsubscribe(channel)
            except Exception as exc:  # stays subscribed: its frames are dropped on arrival
                logger.debug("unsubscribing %s failed: %s", channel, exc)

    async def publish(self, thread_id: str, payload: str) -> None:
        await self.redis.publish(live.frames_channel(thread_id), payload)

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
            await asyncio.wait([self.listener], timeout=5)
            self.listener = None
        try:
            await self.pubsub.aclose()
        except Exception as exc:  # Redis already gone: nothing left to close
            logger.debug("closing the frames pub/sub failed: %s", exc)

    async def _listen(self) -> None:
        # redis-py subscribes the connection again to every channel when it reconnects, on
        # the next read; frames published meanwhile are missed, and their subscribers resync.
        await outage.receive_forever(
            "receiving frames from other processes",
            lambda: self.pubsub.get_message(timeout=None),
            self._handle,
            pause=0.5,
        )

    async def _handle(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        channel = message["channel"]
        if message["type"] == "message" and channel == live.BATCHED_CHANNEL:
            await self.hub.received_batch(message["data"])
        elif message["type"] == "message":
            thread_id = channel.removeprefix(live.frames_channel(""))
            await self.hub.received(thread_id, message["data"])
        elif message["type"] == "subscribe":
            for confirmed in self.joining.pop(channel, []):
                if not confirmed.done():
                    confirmed.set_result(None)


def hub() -> Hub:
    """This event loop's hub (one per daphne process; kept by runtime.py)."""
    return runtime.slot("hub", _new_hub)


def _new_hub() -> Hub:
    return Hub(runtime.redis_client() if settings.REDIS_URL else None)


async def publish_strictly(thread_id: str, frame: dict[str, Any]) -> None:
    """Send a frame to every subscriber of the thread; raises if Redis is unreachable."""
    await hub().publish(str(thread_id), frame)


async def publish(
    thread_id: str,
    frame: dict[str, Any],
    *,
    text: str | None = None,
    local: bool = True,
    remote: bool = True,
) -> bool:
    """Send a frame to every subscriber of the thread, if Redis can be reached now.

    A wake-up (see above), so a failure here (Redis restarting) is logged once per outage and
    the reply goes on; False says it failed. `text`, `local` and `remote` as for
    `Hub.publish`.
    """
    try:
        await hub().publish(str(thread_id), frame, text=text, local=local, remote=remote)
    except Exception as exc:
        _health.failed(exc)
        return False
    _health.succeeded()
    return True


def user_topic(user_id: int) -> str:
    """The topic of one user's own events (their credentials, their thread list), beside the
    threads' topics, which are UUIDs."""
    return f"user:{user_id}"


def publish_after_commit(topics: list[str], frame: dict[str, Any]) -> None:
    """From synchronous code (services, signals): publish the frame to each topic once the
    transaction commits, on the event loop this thread works for (a request, the SQLite
    thread); with none (a management command) straight to Redis, if there is one."""
    transaction.on_commit(lambda: _publish_from_sync(topics, frame))


def _publish_from_sync(topics: list[str], frame: dict[str, Any]) -> None:
    text = json.dumps(frame)
    try:
        if (loop := dbthread.caller_loop()) is not None:
            asyncio.run_coroutine_threadsafe(_publish_all(topics, frame, text), loop)
        elif settings.REDIS_URL:
            import redis

            with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2) as client:
                for topic in topics:
                    client.publish(live.frames_channel(topic), f"sync {text}")
    except Exception as exc:  # a wake-up: those who miss it catch up at their next read
        _health.failed(exc)


async def _publish_all(topics: list[str], frame: dict[str, Any], text: str) -> None:
    for topic in topics:
        await publish(topic, frame, text=text)
