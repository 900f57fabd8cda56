"""What an event loop holds for as long as it runs: the Redis client and the process's singletons.

A Redis connection pool, an httpx pool (the openai clients) and an asyncio task all belong to
the loop that made them. daphne runs one loop per process, and the tests one per test, so
everything a process keeps between requests is kept here, per loop, made on first use.

This module sits at the bottom and imports none of the modules it serves: it keeps *slots*,
and each owner fills its own through `slot(name, make)` in its accessor (`live.store()`,
`broadcast.hub()`, `ownership.registry()`, `limits.counts()`). It holds directly only what
needs no owner: `redis_client()` (the one connection pool, shared by the live store, the hub's
pub/sub and the per-user limits), `openai_clients()` (agent.py fills it) and `tasks()` (the
background tasks, tasks.py). `close()` is the one place that ends them all: a slot's object
may say how, with `settle(timeout)` (let its work finish, before the background tasks are
cancelled) and `close()` (let go of what it holds, after).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

if TYPE_CHECKING:
    import openai
    import redis.asyncio

# How long `close()` lets this loop's replies and tasks finish before it cancels them.
CLOSE_SECONDS = 5

T = TypeVar("T")


class Runtime:
    """One event loop's shared state; each slot is made on first use by its owner."""

    def __init__(self) -> None:
        self.redis: redis.asyncio.Redis | None = None
        self.slots: dict[str, Any] = {}
        self.openai_clients: dict[tuple[str, str, str], openai.AsyncOpenAI] = {}
        self.tasks: set[asyncio.Task] = set()


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


def slot(name: str, make: Callable[[], T]) -> T:
    """This loop's object in slot `name`, made by `make()` on first use."""
    slots = current().slots
    if name not in slots:
        slots[name] = make()
    return slots[name]


def peek(name: str) -> Any:
    """This loop's object in slot `name`, or None if nothing made it yet."""
    return current().slots.get(name)


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


def openai_clients() -> dict[tuple[str, str, str], openai.AsyncOpenAI]:
    """This loop's provider clients, by (provider, base URL, key); agent.py fills it."""
    return current().openai_clients


def tasks() -> set[asyncio.Task]:
    """This loop's background tasks still running (tasks.py keeps them referenced)."""
    return current().tasks


async def close() -> None:
    """End this loop's runtime: each slot settles (its replies get CLOSE_SECONDS to finish),
    then every background task is cancelled, each slot closes (the hub's pub/sub), and the
    provider clients and the Redis client are closed. The next accessor call starts afresh.

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
        for held in list(runtime.slots.values()):
            if hasattr(held, "settle"):
                await held.settle(timeout=CLOSE_SECONDS)
        left = [task for task in runtime.tasks if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=CLOSE_SECONDS)
        for held in list(runtime.slots.values()):
            if hasattr(held, "close"):
                with contextlib.suppress(Exception):
                    await held.close()
        for client in runtime.openai_clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if runtime.redis is not None:
            with contextlib.suppress(Exception):
                await runtime.redis.aclose()
    finally:
        if _runtimes.get(loop) is runtime:
            del _runtimes[loop]
