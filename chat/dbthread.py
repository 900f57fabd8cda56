"""Where the engine's ORM calls run: off the event loop, on connections kept for the next call.

PostgreSQL: the thread pool, each call borrowing a connection from psycopg's pool and giving it
back (channels' `database_sync_to_async`, not thread-sensitive: otherwise every start,
checkpoint and final save of every reply would queue on one thread).

SQLite: one thread of its own with one connection kept open. SQLite takes one writer at a time
anyway; writers on several connections only wait for its file lock, sleeping in its busy
handler (up to 100 ms a turn), and every call paid for opening a connection. On one thread the
calls queue in order and each costs only its statements. Page requests keep their own
connections, so the file lock still guards the two.
"""

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_calls = threading.local()  # .loop: the event loop the SQLite thread's current call came from
_executor_lock = threading.Lock()


def off_loop(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A synchronous ORM function as a coroutine function, run where this database wants it."""
    # The engine's name from settings, not `connection.vendor`: on the event loop that made a
    # connection object for each task's context (asgiref's Local), one per open socket.
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return database_sync_to_async(function, thread_sensitive=False)

    @functools.wraps(function)
    async def on_db_thread(*args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(_keeping_connection, function, args, kwargs, loop)
        return await loop.run_in_executor(_sqlite_thread(), call)

    return on_db_thread


def _sqlite_thread() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-sqlite")
        return _executor


def _keeping_connection(
    function: Callable[..., T], args: tuple, kwargs: dict, loop: asyncio.AbstractEventLoop
) -> T:
    """Run `function` on this thread's connection, kept open unless the call broke it."""
    _calls.loop = loop
    try:
        return function(*args, **kwargs)
    except DatabaseError:
        # Whatever failed (a locked or vanished file), the next call starts on a new connection.
        connection.close()
        raise


def caller_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop that synchronous code on this thread works for, if any: the loop of a
    request's `sync_to_async` (asgiref), or of a call on the SQLite thread; None in a
    management command."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None and threading.current_thread().name.startswith("chat-sqlite"):
        loop = getattr(_calls, "loop", None)
    return loop if loop is not None and loop.is_running() else None
