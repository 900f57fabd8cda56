"""Live state of the replies in flight: text so far, frame boundaries, last `seq`, owner.

The channel layer only wakes subscribers up; this store is the record a reconnecting client
resumes from (DESIGN.md "Known limits": group_send may drop frames). Without Redis it lives in
this process; with REDIS_URL it lives in Redis so any process can serve a snapshot.

Ordering promise: a frame is recorded here before it is published, and a subscriber joins the
thread's group before it reads a snapshot, so snapshot + later frames never leave a gap.

A finished reply's record stays (marked done, with its terminal frame) for a few minutes, so an
EventSource cut off near the end can still be replayed exactly; it no longer counts as active.
"""

import asyncio
import json
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

# How long a finished reply stays replayable for resuming event streams.
REPLAY_SECONDS = 300


def record_ttl() -> int:
    """How long a record may outlive a dead owner: longer than any reply may run.

    Liveness is told by the owner's heartbeat, not by this expiry; it only bounds the garbage
    a crash leaves behind.
    """
    return int(settings.STREAM_TIMEOUT) + 60


def owner_beat_seconds() -> float:
    """How often an owner says it is alive: three beats per OWNER_TTL_SECONDS."""
    return settings.OWNER_TTL_SECONDS / 3


@dataclass
class LiveReply:
    """A reply's record: `content` is the text of frames up to and including `seq`."""

    message_id: str
    owner: str
    seq: int
    content: str
    model: str = ""
    # offsets[k]: the length of `content` after frame k (frame 0, `start`, adds nothing).
    offsets: list[int] = field(default_factory=lambda: [0])
    terminal: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Whether the reply has ended (its record is kept only for replay)."""
        return self.terminal is not None

    def frame_texts(self, after_seq: int) -> list[tuple[int, str]]:
        """(seq, text) of each token frame after `after_seq`, cut at the recorded boundaries."""
        return [
            (seq, self.content[self.offsets[seq - 1] : self.offsets[seq]])
            for seq in range(max(after_seq + 1, 1), self.seq + 1)
        ]


class LiveStore(Protocol):
    """Where replies in flight are recorded."""

    async def claim(self, *, thread_id: str, message_id: str, owner: str, model: str) -> bool:
        """Record a new reply for the thread; False if one is already in flight there."""

    async def append(self, *, thread_id: str, seq: int, text: str) -> None:
        """Record frame `seq` of the thread's reply, whose text adds `text`."""

    async def record(self, *, thread_id: str) -> LiveReply | None:
        """The thread's latest record, in flight or recently done."""

    async def finish(self, *, thread_id: str, message_id: str, terminal: dict[str, Any]) -> None:
        """Mark the reply ended with its terminal frame; kept a while for replay."""

    async def release(self, *, thread_id: str, message_id: str) -> None:
        """Forget the reply's record at once."""

    async def owner_beat(self, *, owner: str) -> None:
        """Say that this owner process is alive."""

    async def owner_alive(self, *, owner: str) -> bool:
        """Whether the owner process said recently that it is alive."""


async def snapshot(store: LiveStore, *, thread_id: str) -> LiveReply | None:
    """The thread's reply in flight, if any (a done record is not in flight)."""
    reply = await store.record(thread_id=thread_id)
    return None if reply is None or reply.done else reply


class MemoryStore:
    """One process: the laptop default."""

    def __init__(self) -> None:
        self._replies: dict[str, LiveReply] = {}
        self._expiry: dict[str, float] = {}

    async def claim(self, *, thread_id: str, message_id: str, owner: str, model: str) -> bool:
        current = await self.record(thread_id=thread_id)
        if current is not None and not current.done:
            return False
        self._replies[thread_id] = LiveReply(message_id, owner, 0, "", model)
        self._expiry.pop(thread_id, None)
        return True

    async def append(self, *, thread_id: str, seq: int, text: str) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None and not reply.done:
            reply.content += text
            reply.seq = seq
            reply.offsets.append(len(reply.content))

    async def record(self, *, thread_id: str) -> LiveReply | None:
        expires = self._expiry.get(thread_id)
        if expires is not None and expires < asyncio.get_running_loop().time():
            self._replies.pop(thread_id, None)
            self._expiry.pop(thread_id, None)
        return self._replies.get(thread_id)

    async def finish(self, *, thread_id: str, message_id: str, terminal: dict[str, Any]) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None and reply.message_id == message_id:
            reply.terminal = terminal
            self._expiry[thread_id] = asyncio.get_running_loop().time() + REPLAY_SECONDS

    async def release(self, *, thread_id: str, message_id: str) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None and reply.message_id == message_id:
            del self._replies[thread_id]
            self._expiry.pop(thread_id, None)

    async def owner_beat(self, *, owner: str) -> None:
        return None

    async def owner_alive(self, *, owner: str) -> bool:
        # Only this process exists; its own owner is alive while it runs.
        return True


# Each script runs atomically: a crash between two commands cannot leave a thread locked
# forever, and a reader never sees text without its seq.
_CLAIM = """
if redis.call('exists', KEYS[1]) == 1 and redis.call('hget', KEYS[1], 'terminal') == false then
  return 0
end
redis.call('del', KEYS[1], KEYS[2], KEYS[3])
redis.call('hset', KEYS[1], 'message_id', ARGV[1], 'owner', ARGV[2], 'seq', 0, 'model', ARGV[4])
redis.call('set', KEYS[2], '')
redis.call('rpush', KEYS[3], 0)
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[3]) end
return 1
"""
_APPEND = """
if redis.call('hget', KEYS[1], 'terminal') ~= false then return 0 end
local length = redis.call('append', KEYS[2], ARGV[2])
redis.call('rpush', KEYS[3], length)
redis.call('hset', KEYS[1], 'seq', ARGV[1])
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[3]) end
return 1
"""
_FINISH = """
if redis.call('hget', KEYS[1], 'message_id') ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[1], 'terminal', ARGV[2])
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[3]) end
return 1
"""
_RELEASE = """
if redis.call('hget', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2], KEYS[3])
end
return 1
"""


class RedisStore:
    """Many processes: the record is in Redis, text appended per frame (never per token)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._claim = self._redis.register_script(_CLAIM)
        self._append = self._redis.register_script(_APPEND)
        self._finish = self._redis.register_script(_FINISH)
        self._release = self._redis.register_script(_RELEASE)

    @staticmethod
    def _keys(thread_id: str) -> list[str]:
        base = f"chat:live:{thread_id}"
        return [base, f"{base}:text", f"{base}:offsets"]

    async def claim(self, *, thread_id: str, message_id: str, owner: str, model: str) -> bool:
        args = [message_id, owner, record_ttl(), model]
        return bool(await self._claim(keys=self._keys(thread_id), args=args))

    async def append(self, *, thread_id: str, seq: int, text: str) -> None:
        await self._append(keys=self._keys(thread_id), args=[seq, text, record_ttl()])

    async def record(self, *, thread_id: str) -> LiveReply | None:
        meta, text, offsets = self._keys(thread_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(meta)
            pipe.get(text)
            pipe.lrange(offsets, 0, -1)
            fields, content, bounds = await pipe.execute()
        if not fields:
            return None
        return LiveReply(
            message_id=fields["message_id"],
            owner=fields["owner"],
            seq=int(fields["seq"]),
            content=content or "",
            model=fields.get("model", ""),
            offsets=[int(b) for b in bounds] or [0],
            terminal=json.loads(fields["terminal"]) if "terminal" in fields else None,
        )

    async def finish(self, *, thread_id: str, message_id: str, terminal: dict[str, Any]) -> None:
        args = [message_id, json.dumps(terminal), REPLAY_SECONDS]
        await self._finish(keys=self._keys(thread_id), args=args)

    async def release(self, *, thread_id: str, message_id: str) -> None:
        await self._release(keys=self._keys(thread_id), args=[message_id])

    async def owner_beat(self, *, owner: str) -> None:
        await self._redis.set(f"chat:owner:{owner}", "1", ex=int(settings.OWNER_TTL_SECONDS))

    async def owner_alive(self, *, owner: str) -> bool:
        return bool(await self._redis.exists(f"chat:owner:{owner}"))


# One store per event loop: a Redis connection pool belongs to the loop that made it.
_stores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveStore]" = (
    weakref.WeakKeyDictionary()
)


def store() -> LiveStore:
    """This event loop's store, chosen by REDIS_URL."""
    loop = asyncio.get_running_loop()
    if loop not in _stores:
        _stores[loop] = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryStore()
    return _stores[loop]
