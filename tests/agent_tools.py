"""Tools the tests name in AGENT_TOOLS, next to the built-ins: one slow, one that fails, one
that says too much (tests/test_agent_tools.py)."""

import asyncio

from chat.tools import tool


@tool
async def slow(seconds: float) -> str:
    """Wait, then say so."""
    await asyncio.sleep(seconds)
    return f"waited {seconds} s"


@tool
def broken(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


@tool
def chatty(size: int) -> str:
    """Says `size` characters."""
    return "blah " * (size // 5)
