"""Background tasks that belong to no request: kept referenced until done, failures logged.

asyncio keeps only a weak reference to a task, so one nobody holds may vanish mid-way; and a
task whose exception nobody retrieves fails silently. Every fire-and-forget task goes here.
"""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from chat import runtime

logger = logging.getLogger(__name__)


def background(coroutine: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task:
    """Run the coroutine as a task of this loop; its failure is logged under `name`."""
    task = asyncio.get_running_loop().create_task(coroutine, name=name)
    kept = runtime.tasks()
    kept.add(task)
    task.add_done_callback(kept.discard)
    task.add_done_callback(_done)
    return task


def running() -> set[asyncio.Task]:
    """This loop's background tasks still running."""
    return set(runtime.tasks())


def _done(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        logger.error("task %s failed", task.get_name(), exc_info=exc)
