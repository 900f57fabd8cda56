"""How many replies a user may start per minute (REPLIES_PER_MINUTE) and have running at once
(MAX_REPLIES_IN_FLIGHT), on every transport and every process."""

import asyncio
import time
import weakref
from collections import defaultdict

from django.conf import settings

_memory: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()
_redis: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()


async def reply_allowed(*, user_id: int) -> bool:
    """Count one more reply for the user in this minute; False when over the limit.

    A fixed one-minute window, counted in Redis when there is one so every process shares it.
    """
    limit = settings.REPLIES_PER_MINUTE
    if limit <= 0:
        return True
    window = int(time.time() // 60)
    loop = asyncio.get_running_loop()
    if settings.REDIS_URL:
        key = f"chat:rate:{user_id}:{window}"
        async with _client().pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
    else:
        counts = _memory.setdefault(loop, defaultdict(int))
        for stale in [k for k in counts if k[1] != window]:
            del counts[stale]
        counts[(user_id, window)] += 1
        count = counts[(user_id, window)]
    return count <= limit


# Replies in flight per user, on every process: a sorted set of reply ids, each scored with
# the time past which it cannot still be running (a crashed process's entries age out).
_IN_FLIGHT = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return 1
"""
_in_flight: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = (
    weakref.WeakKeyDictionary()
)
_scripts: "weakref.WeakKeyDictionary[object, object]" = weakref.WeakKeyDictionary()


def _longest_reply() -> float:
    return settings.STREAM_TIMEOUT + settings.OUTAGE_SECONDS + 60


async def in_flight_begin(*, user_id: int, reply_id: str) -> bool:
    """Count one more reply in flight for the user; False when MAX_REPLIES_IN_FLIGHT are
    running already (threads are unlimited, so this is what bounds a user's spend at once)."""
    cap = settings.MAX_REPLIES_IN_FLIGHT
    if cap <= 0:
        return True
    now = time.time()
    until = now + _longest_reply()
    if settings.REDIS_URL:
        args = [now, until, cap, reply_id, int(_longest_reply())]
        return bool(await _in_flight_script()(keys=[f"chat:inflight:{user_id}"], args=args))
    running = _in_flight.setdefault(asyncio.get_running_loop(), defaultdict(dict))[user_id]
    for stale in [r for r, ends in running.items() if ends <= now]:
        del running[stale]
    if len(running) >= cap:
        return False
    running[reply_id] = until
    return True


async def in_flight_end(*, user_id: int, reply_id: str) -> None:
    """The reply is no longer in flight."""
    if settings.MAX_REPLIES_IN_FLIGHT <= 0:
        return
    if settings.REDIS_URL:
        await _client().zrem(f"chat:inflight:{user_id}", reply_id)
        return
    _in_flight.setdefault(asyncio.get_running_loop(), defaultdict(dict))[user_id].pop(
        reply_id, None
    )


def _client():
    loop = asyncio.get_running_loop()
    if loop not in _redis:
        import redis.asyncio as redis

        _redis[loop] = redis.Redis.from_url(settings.REDIS_URL)
    return _redis[loop]


def _in_flight_script():
    """The in-flight script, registered once per client (not per reply)."""
    client = _client()
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(_IN_FLIGHT)
    return script
