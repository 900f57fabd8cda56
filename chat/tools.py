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
`calculate` (exact arithmetic, no `eval`) and `search_threads` (the asking user's own threads).
"""

import ast
import dataclasses
import datetime
import operator
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.tool import default_tool_error_function
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils.module_loading import import_string


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


def bounded(output: Any) -> str:
    """A tool's output as text, cut at TOOL_OUTPUT_CHARS."""
    text = output if isinstance(output, str) else str(output)
    limit = settings.TOOL_OUTPUT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output cut at {limit} of {len(text)} characters]"


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


_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_MAX_DIGITS = 10_000


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(Decimal(str(node.value)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1:
                raise ValueError("only whole powers are exact")
            if abs(right) > 1000 or abs(left.numerator).bit_length() * abs(right) > 33_000:
                raise ValueError("the power is too large")
        elif isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ValueError("division by zero")
        result = _OPERATORS[type(node.op)](left, right)
        result = Fraction(result)
        if len(str(result.numerator)) + len(str(result.denominator)) > _MAX_DIGITS:
            raise ValueError("the result is too large")
        return result
    raise ValueError(f"only numbers and + - * / // % ** ( ) are allowed, not {ast.dump(node)[:40]}")


def _exact(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:  # a terminating decimal: write it out exactly
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return f"{value.numerator}/{value.denominator} (about {float(value):.12g})"


@tool
def calculate(expression: str) -> str:
    """Exact arithmetic on whole and decimal numbers: + - * / // % ** and parentheses.

    Args:
        expression: for example (2.5 + 1/3) * 12 or 2**100.
    """
    if len(expression) > 1000:
        return "The expression is too long (1000 characters at most)."
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
        return f"{expression} = {_exact(_value(tree.body))}"
    except (SyntaxError, ValueError, InvalidOperation, OverflowError) as exc:
        return f"Cannot calculate {expression!r}: {exc}"


@tool
async def search_threads(ctx: RunContextWrapper[ChatContext], query: str) -> str:
    """Search the user's own earlier conversations by title and text.

    Args:
        query: words to look for.
    """
    return await sync_to_async(_search)(user_id=ctx.context.user_id, query=query)


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
