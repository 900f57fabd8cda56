"""How many replies a user may start per minute (REPLIES_PER_MINUTE), on every transport."""

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
        if loop not in _redis:
            import redis.asyncio as redis

            _redis[loop] = redis.Redis.from_url(settings.REDIS_URL)
        key = f"chat:rate:{user_id}:{window}"
        async with _redis[loop].pipeline(transaction=True) as pipe:
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
