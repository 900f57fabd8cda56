"""Riding out a short outage of the database or Redis.

A restart of PostgreSQL or Redis drops every connection for a few seconds. The calls a reply
cannot do without (its start, its final save, its terminal frame) are retried with backoff for
up to OUTAGE_SECONDS; the ones it can do without for a while (a checkpoint, a wake-up publish)
fail softly and are made good by the next one. Django opens a new database connection after a
failed one, and redis-py reconnects on the next command, so a retry is all a call needs.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions
from django.conf import settings
from django.db import InterfaceError, OperationalError

from chat import dbthread, metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that a reconnect can cure. OSError covers a refused or reset socket.
TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


def is_transient(exc: BaseException) -> bool:
    """Whether the failure is an outage a retry may outlast (not a bug or a refusal)."""
    return isinstance(exc, TRANSIENT)


async def retrying(
    what: str, call: Callable[[], Awaitable[T]], *, seconds: float | None = None
) -> T:
    """`call()`, retried with backoff on transient failures for up to `seconds`
    (OUTAGE_SECONDS by default); the last failure is raised when the bound passes."""
    bound = settings.OUTAGE_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + bound
    delay = _FIRST_DELAY
    failures = 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                if failures:
                    logger.error(
                        "%s: gave up after %d tries over %.1f s", what, failures + 1, bound
                    )
                raise
            if not failures:
                logger.warning(
                    "%s failed (%s: %s); retrying for up to %g s",
                    what,
                    type(exc).__name__,
                    exc,
                    bound,
                )
            failures += 1
            metrics.OUTAGE_RETRIES.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
        else:
            if failures:
                logger.warning("%s: succeeded after %d tries", what, failures + 1)
            return result


async def attempt(what: str, call: Callable[[], Awaitable[object]]) -> bool:
    """`call()` through an outage; False, logged, if it still fails when OUTAGE_SECONDS pass
    (for a step whose failure must not stop what follows it)."""
    try:
        await retrying(what, call)
    except Exception:
        logger.exception("%s failed", what)
        return False
    return True


async def db(what: str, function: Callable[..., T], /, **kwargs: object) -> T:
    """A synchronous ORM function run off the event loop (`dbthread.off_loop`, the one way
    async code reaches the database), retried through an outage."""
    return await retrying(what, lambda: dbthread.off_loop(function)(**kwargs))


async def receive_forever(
    what: str,
    receive: Callable[[], Awaitable[T]],
    handle: Callable[[T], Awaitable[None]],
    *,
    pause: float = 1.0,
) -> None:
    """`handle(await receive())` for ever; a receive that fails (Redis restarting) is tried
    again after `pause` seconds, logged once per outage, so the loop never goes deaf."""
    health = Softly(what)
    while True:
        try:
            received = await receive()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.failed(exc)
            await asyncio.sleep(pause)
            continue
        health.succeeded()
        await handle(received)


class Softly:
    """Logs the failures of a call that may fail for a while: the first of an outage as a
    warning with its cause, the recovery once, and nothing in between."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing_since: float | None = None
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        """Note a failure (logged once per outage; a non-transient one with its traceback)."""
        self.failures += 1
        if not is_transient(exc):
            logger.error("%s failed", self.what, exc_info=exc)
        elif self.failing_since is None:
            logger.warning("%s failing (%s: %s)", self.what, type(exc).__name__, exc)
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def succeeded(self) -> None:
        """Note a success; logs the recovery after a failure."""
        if self.failing_since is not None:
            logger.warning(
                "%s recovered after %.1f s (%d failures)",
                self.what,
                time.monotonic() - self.failing_since,
                self.failures,
            )
            self.failing_since = None
            self.failures = 0
