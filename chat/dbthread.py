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
from django.db import DatabaseError, connection, transaction

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_calls = threading.local()  # .loop: the event loop the SQLite thread's current call came from
_executor_lock = threading.Lock()


def _on_sqlite() -> bool:
    # The engine's name from settings, not `connection.vendor`: on the event loop that made a
    # connection object for each task's context (asgiref's Local), one per open socket.
    return settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


def off_loop(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """A synchronous ORM function as a coroutine function, run where this database wants it."""
    if not _on_sqlite():
        return database_sync_to_async(function, thread_sensitive=False)

    @functools.wraps(function)
    async def on_db_thread(*args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(_keeping_connection, function, args, kwargs, loop)
        return await loop.run_in_executor(_sqlite_thread(), call)

    return on_db_thread


# The most calls `together` commits in one transaction: the SQLite file stays locked for the
# page requests' own connections while it runs, so a batch is kept short.
GROUP_MAX = 8
_groups: dict[asyncio.AbstractEventLoop, list] = {}  # each loop's batch still taking calls
_groups_lock = threading.Lock()


async def together(function: Callable[[], T]) -> T:
    """`function()` off the event loop, as `off_loop` runs it, but on SQLite committed with
    the calls that queue up beside it (group commit): one trip to the SQLite thread and one
    transaction for up to GROUP_MAX of them, each in its own savepoint, so one that raises
    rolls back alone and the others commit; a failed commit fails them all (none holds). A
    call that finds none beside it runs alone, on its own transactions. Elsewhere
    (PostgreSQL's pool of threads) each runs alone."""
    if not _on_sqlite():
        return await off_loop(function)()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    with _groups_lock:
        group = _groups.get(loop)
        first = group is None or len(group) >= GROUP_MAX
        if first:
            group = _groups[loop] = []
        group.append((function, future))
    if first:
        call = functools.partial(_keeping_connection, _run_group, (group, loop), {}, loop)
        loop.run_in_executor(_sqlite_thread(), call).add_done_callback(
            functools.partial(_group_ended, group)
        )
    return await future


def _run_group(group: list, loop: asyncio.AbstractEventLoop) -> None:
    """On the SQLite thread: close the batch to newcomers, run each of its calls in a
    savepoint of one transaction, commit, and answer each."""
    with _groups_lock:
        if _groups.get(loop) is group:
            del _groups[loop]
    outcomes: list[tuple[asyncio.Future, BaseException | None, object]] = []
    if len(group) == 1:  # alone: no transaction around its own, no savepoint
        (function, future), failure, value = group[0], None, None
        try:
            value = function()
        except Exception as exc:
            failure = exc
            if isinstance(exc, DatabaseError):
                connection.close()
        loop.call_soon_threadsafe(_answer, future, failure, value)
        return
    try:
        with transaction.atomic():
            for function, future in group:
                try:
                    with transaction.atomic():
                        value = function()
                except Exception as exc:
                    outcomes.append((future, exc, None))
                else:
                    outcomes.append((future, None, value))
    except Exception as exc:  # the commit failed, or a rollback: none of them holds
        outcomes = [(future, exc, None) for _, future in group]
        if isinstance(exc, DatabaseError):
            connection.close()
    for future, failure, value in outcomes:
        loop.call_soon_threadsafe(_answer, future, failure, value)


def _answer(future: asyncio.Future, failure: BaseException | None, value: object) -> None:
    if future.done():  # its caller was cancelled: what it did stands, as with `off_loop`
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(value)


def _group_ended(group: list, trip: asyncio.Future) -> None:
    """A trip that failed before answering (the executor shut down): every call fails."""
    for _, future in group:
        if future.done():
            continue
        if trip.cancelled():
            future.cancel()
        elif (failure := trip.exception()) is not None:
            future.set_exception(failure)


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
