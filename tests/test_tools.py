"""The agent's built-in tools, called as the Agents SDK calls them (JSON arguments, a context):
exact arithmetic that runs no code, the time in the user's zone, and a search that sees only
the asking user's threads."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from agents.tool_context import ToolContext

from chat import tools
from chat.models import Message, Thread


def call(tool, user_id: int = 0, user_zone: str = "UTC", **arguments) -> tuple[str, dict]:
    """Invoke a tool as the SDK does (JSON arguments); its output and the failures noted."""
    context = tools.ChatContext(user_id=user_id, time_zone=user_zone)
    ctx = ToolContext(
        context=context,
        tool_name=tool.name,
        tool_call_id="call-1",
        tool_arguments=json.dumps(arguments),
    )
    prepared = tools._prepared(tool)
    output = asyncio.run(prepared.on_invoke_tool(ctx, json.dumps(arguments)))
    return output, context.failures


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("0.1 + 0.2", "0.3"),
        ("123456789012345678901234567890.5", "123456789012345678901234567890.5"),
        ("2**100", str(2**100)),
        ("(2.5 + 1/3) * 12", "34"),
        ("1/3", "1/3 (about 0.333333333333)"),
        ("7 // 2 + 7 % 2", "4"),
        ("-3^2", "-9"),
    ],
)
def test_calculate_is_exact(expression, expected):
    output, failures = call(tools.calculate, expression=expression)
    assert output == f"{expression} = {expected}" and failures == {}


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "(1).__class__", "9**9**9", "1/0", "x + 1", "2**0.5"],
)
def test_calculate_refuses_anything_but_arithmetic_and_runs_nothing(expression):
    output, _ = call(tools.calculate, expression=expression)
    assert output.startswith(f"Cannot calculate {expression!r}")


def test_the_time_is_told_in_the_users_zone_unless_another_is_asked():
    output, _ = call(tools.current_time, user_zone="Asia/Tokyo", time_zone=None)
    assert "(Asia/Tokyo, UTC+0900)" in output
    output, _ = call(tools.current_time, time_zone="America/New_York")
    assert re.search(r"\(America/New_York, UTC-0[45]00\)", output)
    output, _ = call(tools.current_time, time_zone="Mars/Olympus")
    assert output.startswith("Unknown time zone")


@pytest.mark.django_db(transaction=True)
def test_search_threads_finds_only_the_asking_users_threads(alice, bob):
    mine = Thread.objects.create(owner=alice, title="Trip to Lisbon")
    Message.objects.create(thread=mine, role="user", content="pack the umbrella for Lisbon")
    theirs = Thread.objects.create(owner=bob, title="Bob's Lisbon secrets")
    Message.objects.create(thread=theirs, role="user", content="my Lisbon password is hunter2")

    output, _ = call(tools.search_threads, user_id=alice.pk, query="Lisbon")
    assert "Trip to Lisbon" in output and "umbrella" in output
    assert "Bob" not in output and "hunter2" not in output
    output, _ = call(tools.search_threads, user_id=bob.pk, query="umbrella")
    assert output == "No conversation of yours mentions 'umbrella'."


def test_a_tool_that_raises_is_an_error_result_noted_as_failed_and_output_is_bounded(settings):
    settings.TOOL_OUTPUT_CHARS = 50

    @tools.tool
    def broken(what: str) -> str:
        """Fails."""
        raise RuntimeError(f"no {what}")

    @tools.tool
    def chatty() -> str:
        """Says a lot."""
        return "x" * 500

    output, failures = call(broken, what="luck")
    assert output == "The tool failed: no luck" and failures == {"call-1": output}
    output, failures = call(chatty)
    assert output.startswith("x" * 50) and "[output cut at 50 of 500 characters]" in output
    assert failures == {}


def test_tools_are_loaded_by_dotted_path_and_a_plain_function_becomes_a_tool(settings):
    settings.AGENT_TOOLS = ["chat.tools.calculate", "tests.test_tools.plain_tool"]
    names = [t.name for t in tools.enabled()]
    assert names == ["calculate", "plain_tool"]
    assert all(t.timeout_seconds == settings.TOOL_TIMEOUT_SECONDS for t in tools.enabled())


def plain_tool(word: str) -> str:
    """A developer's tool written as a plain function."""
    return word.upper()


# A base whose numerator is 1 but whose denominator has 12,680 bits, raised to -1000: the old
# power check looked at the numerator only and computed it (2.2 s of CPU, the GIL held).
HOSTILE = "(1/(9**1000)**4)**-1000"
BIG = "(9**1000)**4"  # 12,680 bits, each power small enough for the old check


@pytest.mark.parametrize(
    "expression",
    [
        HOSTILE,
        f"(1/{BIG}) * (1/{BIG})",  # the denominators' product: 25,360 bits
        f"(1/{BIG}) / {BIG}",
        f"{BIG} // (1/{BIG})",
        f"{BIG} % (1/{BIG}+1)",
        f"(1/{BIG}) + (1/(7**1000)**4)",
        f"{BIG} * {BIG}",
        "1" + "+1" * 300,  # too many nodes, however small each number
        "1e999999",  # a literal is sized before it is made
    ],
)
def test_calculate_refuses_an_operation_too_large_before_it_computes_it(expression):
    cpu = time.process_time()
    output, _ = call(tools.calculate, expression=expression)
    assert output.startswith(f"Cannot calculate {expression!r}: ")
    assert "too large" in output or "too many" in output, output
    assert time.process_time() - cpu < 0.5, "refused by the operands' sizes, not computed"


def test_calculate_runs_in_a_child_process_that_a_timeout_or_a_cancel_kills(tmp_path):
    spin = "while True: pass"
    started = time.monotonic()
    assert asyncio.run(tools.in_child(spin, "", seconds=0.3)) is None
    assert time.monotonic() - started < 5

    pid_file = tmp_path / "pid"
    spin_and_say = f"import os; open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n{spin}"

    async def cancelled() -> None:
        task = asyncio.create_task(tools.in_child(spin_and_say, "", seconds=30))
        for _ in range(500):  # the child has started when it has written its pid
            await asyncio.sleep(0.02)
            if pid_file.exists() and pid_file.read_text():
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped


def test_the_calculator_child_limits_its_own_cpu_and_memory():
    """The budget holds even if the parent never kills it: the kernel does."""
    limited = "from chat import calculator; calculator.limit_self(); "
    spinning = subprocess.run(
        [sys.executable, "-c", limited + "\nwhile True: pass"], timeout=20, capture_output=True
    )
    assert spinning.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    hungry = subprocess.run(
        [sys.executable, "-c", limited + "bytearray(512 * 2**20)"], timeout=20, capture_output=True
    )
    assert b"MemoryError" in hungry.stderr
