"""The agent's tools: Agents SDK function tools the model may call while it answers.

AGENT_TOOLS names them by dotted path. To add one, write a function, decorate it with `tool`
(the SDK's `function_tool`, with this product's handling of failures and timeouts), and name
it in AGENT_TOOLS:

    @tool
    def weather(ctx: RunContextWrapper[ChatContext], city: str) -> str:
        \"\"\"Today's weather in a city.\"\"\"
        ...

A tool that raises, or runs past TOOL_TIMEOUT_SECONDS, becomes an error result that the model
reads (and a step shown as failed), never a failed reply; its output is cut at
TOOL_OUTPUT_CHARS. `ctx.context` is the `ChatContext` of the reply: who asked, so a tool
only ever reads that user's data.

The built-ins are safe on a shared server: `current_time` (in the user's time zone),
`calculate` (exact arithmetic, no `eval`, every step sized before it is computed, in a child
process with its own CPU and memory limits: calculator.py) and `search_threads` (the asking
user's own threads).
"""

import asyncio
import dataclasses
import datetime
import sys
import weakref
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.tool import default_tool_error_function
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils.module_loading import import_string

from chat import calculator, dbthread


@dataclass
class ChatContext:
    """What the tools of one reply may know: who asked, their time zone, and which calls
    failed (by call id, with the error the model was given)."""

    user_id: int
    time_zone: str = "UTC"
    failures: dict[str, str] = field(default_factory=dict)


def _note_failure(ctx: RunContextWrapper[Any], text: str) -> str:
    call_id = getattr(ctx, "tool_call_id", None)
    if call_id and isinstance(ctx.context, ChatContext):
        ctx.context.failures[call_id] = text
    return text


def _failed(ctx: RunContextWrapper[Any], error: Exception) -> str:
    return _note_failure(ctx, f"The tool failed: {error}"[:500])


def _timed_out(ctx: RunContextWrapper[Any], error: Exception) -> str:
    return _note_failure(
        ctx, f"The tool took longer than {settings.TOOL_TIMEOUT_SECONDS:g} s and was stopped."
    )


def tool(func: Any = None, **options: Any) -> Any:
    """`@tool` or `@tool(name_override=...)`: the SDK's `function_tool` with this product's
    failure handling (an error result for the model, the step marked failed)."""
    options.setdefault("failure_error_function", _failed)
    return function_tool(func, **options) if func is not None else function_tool(**options)


def bounded(output: Any, what: str = "output") -> str:
    """A tool's output (or, `what` says, its arguments) as text, cut at TOOL_OUTPUT_CHARS."""
    text = output if isinstance(output, str) else str(output)
    limit = settings.TOOL_OUTPUT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[{what} cut at {limit} of {len(text)} characters]"


def _prepared(found: FunctionTool) -> FunctionTool:
    """A loaded tool with the per-tool timeout, and its output bounded; a tool made with the
    SDK's plain `function_tool` has its generic failure text noted as a failure too."""
    invoke = found.on_invoke_tool
    generic = default_tool_error_function(None, Exception())  # type: ignore[arg-type]

    async def on_invoke_tool(ctx: Any, arguments: str) -> str:
        output = bounded(await invoke(ctx, arguments))
        if output == generic:
            _note_failure(ctx, output)
        return output

    return dataclasses.replace(
        found,
        on_invoke_tool=on_invoke_tool,
        timeout_seconds=found.timeout_seconds or settings.TOOL_TIMEOUT_SECONDS,
        timeout_error_function=found.timeout_error_function or _timed_out,
    )


@lru_cache(maxsize=4)
def _load(paths: tuple[str, ...]) -> tuple[FunctionTool, ...]:
    loaded = []
    for path in paths:
        found = import_string(path)
        if not isinstance(found, FunctionTool):
            found = tool(found)
        loaded.append(_prepared(found))
    return tuple(loaded)


def enabled() -> list[FunctionTool]:
    """The tools AGENT_TOOLS names, ready for an agent (none when it is empty)."""
    return list(_load(tuple(settings.AGENT_TOOLS)))


# --- built-ins --------------------------------------------------------------------------------


@tool
def current_time(ctx: RunContextWrapper[ChatContext], time_zone: str | None = None) -> str:
    """The current date and time.

    Args:
        time_zone: an IANA time zone such as Europe/Paris; the user's own when left out.
    """
    name = time_zone or ctx.context.time_zone
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"Unknown time zone {name!r}; use an IANA name such as Europe/Paris."
    now = datetime.datetime.now(zone)
    return f"{now:%A %d %B %Y, %H:%M:%S} ({name}, UTC{now:%z})"


CALCULATE_SECONDS = 2.0  # a calculation's wall clock in its child, start-up included
CALCULATORS = 2  # calculating children at once per process (one a core); more wait their turn
_CALCULATOR = Path(calculator.__file__).read_text()
_calculators: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)


@tool
async def calculate(expression: str) -> str:
    """Exact arithmetic on whole and decimal numbers: + - * / // % ** and parentheses.

    Args:
        expression: for example (2.5 + 1/3) * 12 or 2**100.
    """
    if len(expression) > calculator.MAX_LENGTH:
        return f"The expression is too long ({calculator.MAX_LENGTH} characters at most)."
    answer = await in_child(_CALCULATOR, expression, seconds=CALCULATE_SECONDS)
    if answer is None:
        return f"Cannot calculate {expression!r}: it ran out of time or memory and was stopped."
    return answer


async def in_child(source: str, given: str, *, seconds: float) -> str | None:
    """What Python `source` writes given `given` on its stdin, run in an isolated child process;
    None if it ran past `seconds` or died. The child is killed on timeout and on cancellation.

    A calculation runs out of this process because a thread cannot be interrupted and big
    integer arithmetic holds the GIL: here it can only use its own core, and is killed."""
    loop = asyncio.get_running_loop()
    slots = _calculators.setdefault(loop, asyncio.Semaphore(CALCULATORS))
    async with slots:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            source,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            said, _ = await asyncio.wait_for(child.communicate(given.encode()), seconds)
        except TimeoutError:
            return None
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    return said.decode(errors="replace") if child.returncode == 0 else None


@tool
async def search_threads(ctx: RunContextWrapper[ChatContext], query: str) -> str:
    """Search the user's own earlier conversations by title and text.

    Args:
        query: words to look for.
    """
    # The engine's one way to the ORM, not thread-sensitive: a reply started by an HTTP request
    # (SSE, ChatKit) inherits that request's context, whose thread-sensitive executor is gone
    # by the time the tool runs ("CurrentThreadExecutor already quit or is broken").
    return await dbthread.off_loop(_search)(user_id=ctx.context.user_id, query=query)


def _search(*, user_id: int, query: str) -> str:
    from chat.models import Message, Thread

    query = query.replace("\x00", "").strip()
    if not query:
        return "Give some words to search for."
    matching = Message.objects.filter(thread=OuterRef("pk"), content__icontains=query)
    threads = (
        Thread.objects.filter(owner_id=user_id)
        .filter(Q(title__icontains=query) | Q(Exists(matching)))
        .order_by("-updated_at")[:5]
    )
    found = []
    for thread in threads:
        hit = thread.messages.filter(content__icontains=query).order_by("-created_at").first()
        excerpt = ""
        if hit is not None:
            at = hit.content.lower().find(query.lower())
            excerpt = hit.content[max(at - 80, 0) : at + 160].replace("\n", " ")
        found.append(f"- {thread.title or 'Untitled'} ({thread.updated_at:%Y-%m-%d}): {excerpt}")
    if not found:
        return f"No conversation of yours mentions {query!r}."
    return f"Your conversations that mention {query!r}:\n" + "\n".join(found)
