"""The agent's built-in tools, called as the Agents SDK calls them (JSON arguments, a context):
exact arithmetic that runs no code, the time in the user's zone, and a search that sees only
the asking user's threads."""

import asyncio
import json
import re

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
