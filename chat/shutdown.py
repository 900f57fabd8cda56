"""Graceful shutdown: on SIGTERM a process drains its replies before daphne stops.

daphne (Twisted) stops its reactor on SIGTERM at once: the loop stops, and replies, which are
tasks of no request, would simply vanish, left `streaming` until another process noticed the
owner's silence. So once this process owns a reply, SIGTERM first drains (`Registry.drain`:
no new replies, running ones go on for up to DRAIN_SECONDS, the rest end `interrupted` with
their shown text saved and their sockets told), then hands over to daphne's own handler. A
second SIGTERM during the drain stops at once.
"""

import asyncio
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from chat.engine.ownership import Registry

logger = logging.getLogger(__name__)

_draining: asyncio.Task | None = None
_installed = False
# After the drain, before daphne closes every socket: time for the terminal frames written to
# this process's sockets to leave their send buffers.
DELIVERY_GRACE_SECONDS = 1.0


def draining() -> bool:
    """Whether this process is shutting down (the health check says so to the balancer)."""
    return _draining is not None


def install(registry: "Registry") -> None:
    """Drain `registry` on SIGTERM; only in a server (daphne) whose main thread runs the loop."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under daphne (tests, management commands): leave signals alone
    from twisted.internet import reactor

    if not reactor.running:
        return
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: Any) -> None:
        global _draining
        if _draining is not None:
            logger.warning("second SIGTERM: stopping now")
            _hand_over(previous, signum, frame)
            return
        _draining = loop.create_task(_drain_then_stop(registry, previous, signum, frame))

    signal.signal(signal.SIGTERM, on_sigterm)
    _installed = True


async def _drain_then_stop(registry: "Registry", previous: Any, signum: int, frame: Any) -> None:
    try:
        await registry.drain(settings.DRAIN_SECONDS)
        await asyncio.sleep(DELIVERY_GRACE_SECONDS)
    except Exception:
        logger.exception("draining failed")
    finally:
        _hand_over(previous, signum, frame)


def _hand_over(previous: Any, signum: int, frame: Any) -> None:
    """Let the server stop as it would have without us."""
    if callable(previous):
        previous(signum, frame)
    else:
        from twisted.internet import reactor

        reactor.callFromThread(reactor.stop)
