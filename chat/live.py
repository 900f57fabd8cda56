"""Live state of the replies in flight: text so far, last `seq`, and which process owns each.

The channel layer only wakes subscribers up; this store is the record a reconnecting client
resumes from (DESIGN.md "Known limits": group_send may drop frames). Without Redis it lives in
this process; with REDIS_URL it lives in Redis so any process can serve a snapshot.

Ordering promise: a frame is recorded here before it is published, and a subscriber joins the
thread's group before it reads a snapshot, so snapshot + later frames never leave a gap.
"""

import asyncio
import weakref
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings


def record_ttl() -> int:
    """How long a Redis record may outlive a dead owner: longer than any reply may run.

    Liveness is told by the owner's heartbeat, not by this expiry; it only bounds the garbage
    a crash leaves behind.
    """
    return int(settings.STREAM_TIMEOUT) + 60


def owner_beat_seconds() -> float:
    """How often an owner says it is alive: three beats per OWNER_TTL_SECONDS."""
    return settings.OWNER_TTL_SECONDS / 3


@dataclass(frozen=True)
class LiveReply:
    """A snapshot of a reply in flight."""

    message_id: str
    owner: str
    seq: int
    content: str


class LiveStore(Protocol):
    """Where replies in flight are recorded."""

    async def claim(self, *, thread_id: str, message_id: str, owner: str) -> bool:
        """Record a new reply for the thread; False if one is already in flight there."""

    async def append(self, *, thread_id: str, seq: int, text: str) -> None:
        """Record frame `seq` of the thread's reply, whose text adds `text`."""

    async def snapshot(self, *, thread_id: str) -> LiveReply | None:
        """The thread's reply in flight, if any."""

    async def release(self, *, thread_id: str, message_id: str) -> None:
        """Forget the thread's reply once it has ended."""

    async def owner_beat(self, *, owner: str) -> None:
        """Say that this owner process is alive."""

    async def owner_alive(self, *, owner: str) -> bool:
        """Whether the owner process said recently that it is alive."""


class MemoryStore:
    """One process: the laptop default."""

    def __init__(self) -> None:
        self._replies: dict[str, LiveReply] = {}

    async def claim(self, *, thread_id: str, message_id: str, owner: str) -> bool:
        if thread_id in self._replies:
            return False
        self._replies[thread_id] = LiveReply(message_id, owner, 0, "")
        return True

    async def append(self, *, thread_id: str, seq: int, text: str) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None:
            self._replies[thread_id] = LiveReply(
                reply.message_id, reply.owner, seq, reply.content + text
            )

    async def snapshot(self, *, thread_id: str) -> LiveReply | None:
        return self._replies.get(thread_id)

    async def release(self, *, thread_id: str, message_id: str) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None and reply.message_id == message_id:
            del self._replies[thread_id]

    async def owner_beat(self, *, owner: str) -> None:
        return None

    async def owner_alive(self, *, owner: str) -> bool:
        # Only this process exists; its own owner is alive while it runs.
        return True


# Claim atomically with its expiry, so a crash between two commands cannot leave a thread
# locked forever.
_CLAIM = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], 'message_id', ARGV[1], 'owner', ARGV[2], 'seq', 0)
redis.call('set', KEYS[2], '')
redis.call('expire', KEYS[1], ARGV[3])
redis.call('expire', KEYS[2], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('hget', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2])
end
return 1
"""


class RedisStore:
    """Many processes: the record is in Redis, text appended per frame (never per token)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)

    @staticmethod
    def _keys(thread_id: str) -> tuple[str, str]:
        return f"chat:live:{thread_id}", f"chat:live:{thread_id}:text"

    async def claim(self, *, thread_id: str, message_id: str, owner: str) -> bool:
        meta, text = self._keys(thread_id)
        return bool(await self._claim(keys=[meta, text], args=[message_id, owner, record_ttl()]))

    async def append(self, *, thread_id: str, seq: int, text: str) -> None:
        meta, text_key = self._keys(thread_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if text:
                pipe.append(text_key, text)
            pipe.hset(meta, "seq", seq)
            pipe.expire(meta, record_ttl())
            pipe.expire(text_key, record_ttl())
            await pipe.execute()

    async def snapshot(self, *, thread_id: str) -> LiveReply | None:
        meta, text_key = self._keys(thread_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(meta)
            pipe.get(text_key)
            fields, content = await pipe.execute()
        if not fields:
            return None
        return LiveReply(fields["message_id"], fields["owner"], int(fields["seq"]), content or "")

    async def release(self, *, thread_id: str, message_id: str) -> None:
        await self._release(keys=list(self._keys(thread_id)), args=[message_id])

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
