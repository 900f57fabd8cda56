"""What an event loop holds for as long as it runs: the Redis client and the process's singletons.

A Redis connection pool, an httpx pool (the openai clients) and an asyncio task all belong to
the loop that made them. daphne runs one loop per process, and the tests one per test, so
everything a process keeps between requests is kept here, per loop, made on first use:

- `redis_client()`: the one Redis client (with REDIS_URL), so one connection pool, shared by
  the live store, the hub's pub/sub and the per-user limits;
- `store()`: the live store (live.py); `hub()`: the frame hub (broadcast.py);
  `registry()`: the replies this process owns (ownership.py);
- `openai_clients()`: the provider clients (agent.py); `limits()`: the in-process counts and
  the Redis script of limits.py; `tasks()`: the background tasks (tasks.py).

The modules reach these through their own accessors (`live.store()`, `broadcast.hub()`,
`ownership.registry()`, ...). `close()` is the one place that ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import openai
    import redis.asyncio

    from chat.broadcast import Hub
    from chat.limits import Counts
    from chat.live import LiveStore
    from chat.ownership import Registry

# How long `close()` lets this loop's replies and tasks finish before it cancels them.
CLOSE_SECONDS = 5


class Runtime:
    """One event loop's shared state; each part is made on first use by its accessor."""

    def __init__(self) -> None:
        self.redis: redis.asyncio.Redis | None = None
        self.store: LiveStore | None = None
        self.hub: Hub | None = None
        self.registry: Registry | None = None
        self.openai_clients: dict[tuple[str, str, str], openai.AsyncOpenAI] = {}
        self.limits: Counts | None = None
        self.tasks: set[asyncio.Task] = set()
        self.sweeper: asyncio.Task | None = None  # ownership.sweep_soon()


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = (
    weakref.WeakKeyDictionary()
)


def current() -> Runtime:
    """This event loop's runtime."""
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is None:
        runtime = _runtimes[loop] = Runtime()
    return runtime


def connect_redis(url: str) -> redis.asyncio.Redis:
    """A Redis client as the product uses one: replies decoded as text, and a command waits
    at most 10 s for an answer, so an outage surfaces as a timeout that outage.py rides out
    rather than a hang."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=10)


def redis_client() -> redis.asyncio.Redis:
    """This loop's Redis client, for REDIS_URL: one connection pool for the whole process."""
    runtime = current()
    if runtime.redis is None:
        runtime.redis = connect_redis(settings.REDIS_URL)
    return runtime.redis


def store() -> LiveStore:
    """This loop's live store: in Redis with REDIS_URL, in this process otherwise."""
    runtime = current()
    if runtime.store is None:
        from chat.live import MemoryStore, RedisStore

        runtime.store = RedisStore(redis_client()) if settings.REDIS_URL else MemoryStore()
    return runtime.store


def hub() -> Hub:
    """This loop's hub of subscribers, linked to the other processes through Redis if any."""
    runtime = current()
    if runtime.hub is None:
        from chat.broadcast import Hub

        runtime.hub = Hub(redis_client() if settings.REDIS_URL else None)
    return runtime.hub


def registry() -> Registry:
    """This loop's registry of the replies it owns."""
    runtime = current()
    if runtime.registry is None:
        from chat.ownership import Registry

        runtime.registry = Registry()
    return runtime.registry


def openai_clients() -> dict[tuple[str, str, str], openai.AsyncOpenAI]:
    """This loop's provider clients, by (provider, base URL, key); agent.py fills it."""
    return current().openai_clients


def limits() -> Counts:
    """This loop's limits state: counts kept in this process when there is no Redis."""
    runtime = current()
    if runtime.limits is None:
        from chat.limits import Counts

        runtime.limits = Counts()
    return runtime.limits


def tasks() -> set[asyncio.Task]:
    """This loop's background tasks still running (tasks.py keeps them referenced)."""
    return current().tasks


async def close() -> None:
    """End this loop's runtime: its replies get CLOSE_SECONDS to finish, then every listener
    and background task is cancelled, and the hub's pub/sub, the provider clients and the
    Redis client are closed. The next accessor call starts a fresh runtime.

    Tests call it at teardown (tests/conftest.py), while their loop still runs: a task that is
    cancelled only when the loop closes can hang the teardown.
    """
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is None:
        return
    # Still this loop's runtime meanwhile: a reply that ends or is cancelled now saves and
    # tells its clients through it.
    try:
        if runtime.registry is not None:
            await runtime.registry.close(timeout=CLOSE_SECONDS)
        left = [task for task in runtime.tasks if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=CLOSE_SECONDS)
        if runtime.hub is not None:
            await runtime.hub.close()
        for client in runtime.openai_clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if runtime.redis is not None:
            with contextlib.suppress(Exception):
                await runtime.redis.aclose()
    finally:
        if _runtimes.get(loop) is runtime:
            del _runtimes[loop]
