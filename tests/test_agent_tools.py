"""An agent that acts, over real daphne and the stub: tool steps stream live between the text
with consecutive `seq`, are saved with the reply, come back to a socket that reconnects
mid-tool, to `/messages/` and to the event stream; stop, failures, timeouts and long outputs
end as the protocol says."""

import asyncio
import json
import re
import time

import httpx
import pytest
from chatkit.types import ThreadCreatedEvent
from websockets.asyncio.client import connect as ws_connect

from chat import frames
from tests import chatkit_client as ck
from tests.helpers import (
    connect,
    frames_until_end,
    new_thread,
    receive,
    reply_text,
    send,
    start_command,
)
from tests.servers import cookie_header, frames_until, login, stub_site
from tests.test_tools import HOSTILE

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

TOOLS = ",".join(
    [
        "chat.tools.current_time",
        "chat.tools.calculate",
        "chat.tools.search_threads",
        "tests.agent_tools.slow",
        "tests.agent_tools.broken",
        "tests.agent_tools.chatty",
    ]
)


@pytest.fixture(scope="module")
def site(stub_server, tmp_path_factory):
    with stub_site(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"tess": "tess-pw", "otto": "otto-pw"},
        AGENT_TOOLS=TOOLS,
        TOOL_TIMEOUT_SECONDS="1.5",
        TOOL_OUTPUT_CHARS="100",
        REPLIES_PER_MINUTE="0",
    ) as server:
        yield server


async def socket(site, user, thread_id):
    ws = await ws_connect(
        f"{site.ws_url}/ws/threads/{thread_id}/",
        origin=site.url,
        additional_headers={"Cookie": cookie_header(user)},
    )
    return ws, json.loads(await ws.recv())


def final_steps(received: list[dict]) -> list[dict]:
    """The steps as the frames left them: the newest frame of each call, in call order."""
    steps: dict[str, dict] = {}
    for frame in received:
        if frame["type"] == "tool":
            steps[frame["call_id"]] = {
                k: v for k, v in frame.items() if k not in ("type", "ts", "message_id", "seq")
            }
    return list(steps.values())


def reply_frames(received: list[dict]) -> list[dict]:
    return [f for f in received if "seq" in f]


async def ask(site, stub, user, text, *, tool_calls, tokens=("Done.",)):
    stub.script(text, tool_calls=tool_calls, tokens=list(tokens))
    thread = user.post("/api/threads/", json={"title": text}).json()["id"]
    ws, _ = await socket(site, user, thread)
    await ws.send(json.dumps({"command": "start", "message": text}))
    return thread, ws


async def test_two_tools_in_a_row_stream_live_and_every_view_shows_the_same_steps(site, stub):
    tess = login(site.url, "tess", "tess-pw")
    thread, ws = await ask(
        site,
        stub,
        tess,
        "add then wait",
        tool_calls=[
            [{"name": "calculate", "arguments": {"expression": "19*23"}}],
            [{"name": "slow", "arguments": {"seconds": 1.0}}],
        ],
        tokens=["19*23 ", "is ", "437."],
    )
    # A second tab opens while the slow tool runs: its `ready` carries the steps so far.
    running = await frames_until(ws, lambda f: f.get("name") == "slow")
    late, ready = await socket(site, tess, thread)
    assert [(s["name"], s["status"]) for s in ready["active"]["steps"]] == [
        ("calculate", "done"),
        ("slow", "running"),
    ]
    received = running + await frames_until(ws, frames.is_terminal)
    late_received = await frames_until(late, frames.is_terminal)

    seqs = [f["seq"] for f in reply_frames(received)]
    assert seqs == list(range(len(seqs))), "tool and token frames share one seq"
    kinds = [(f["type"], f.get("name"), f.get("status")) for f in reply_frames(received)]
    assert kinds[:5] == [
        ("start", None, None),
        ("tool", "calculate", "running"),
        ("tool", "calculate", "done"),
        ("tool", "slow", "running"),
        ("tool", "slow", "done"),
    ]
    assert received[-1]["type"] == "complete"
    steps = final_steps(received)
    assert steps[0]["output"] == "19*23 = 437" and steps[1]["output"] == "waited 1.0 s"
    text = "".join(f.get("token", "") for f in received)
    assert text == "19*23 is 437."
    # The tab that joined mid-tool ends where the first one did: its `ready`, then frames.
    as_ready = [{**step, "type": "tool"} for step in ready["active"]["steps"]]
    assert final_steps(as_ready + late_received) == steps
    assert ready["active"]["content"] + "".join(f.get("token", "") for f in late_received) == text
    saved = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    assert saved["steps"] == steps and saved["content"] == text
    # The event stream replays the same frames, tool steps included.
    reply_id = received[-1]["message_id"]
    with tess.stream(
        "GET", f"/api/threads/{thread}/events/", headers={"Last-Event-ID": f"{reply_id}:0"}
    ) as stream:
        replayed = []
        for line in stream.iter_lines():
            if line.startswith("data: "):
                replayed.append(json.loads(line[6:]))
                if frames.is_terminal(replayed[-1]):
                    break
    strip = lambda fs: [{**f, "ts": 0} for f in fs]  # noqa: E731  (replays stamp anew)
    assert strip(replayed) == strip([f for f in reply_frames(received) if f["seq"] > 0])
    export = tess.get(f"/api/threads/{thread}/export/?format=json").json()
    assert export["messages"][-1]["steps"] == steps
    markdown = tess.get(f"/api/threads/{thread}/export/?format=markdown").text
    assert '> Tool `calculate` (done): `{"expression": "19*23"}` → 19*23 = 437' in markdown
    for w in (ws, late):
        await w.close()


async def test_stop_during_a_tool_cancels_the_step_and_the_reply_with_its_text_saved(site, stub):
    tess = login(site.url, "tess", "tess-pw")
    thread, ws = await ask(
        site,
        stub,
        tess,
        "wait long",
        tool_calls=[[{"name": "slow", "arguments": {"seconds": 1.2}}]],
    )
    await frames_until(ws, lambda f: f.get("status") == "running")
    await ws.send(json.dumps({"command": "stop"}))
    ending = await frames_until(ws, frames.is_terminal)
    assert [(f["type"], f.get("status")) for f in ending if "seq" in f] == [
        ("tool", "cancelled"),
        ("complete", "cancelled"),
    ]
    saved = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    assert saved["status"] == "cancelled"
    assert [s["status"] for s in saved["steps"]] == ["cancelled"]
    await ws.close()


@pytest.mark.parametrize(
    "call, status, output",
    [
        (
            {"name": "broken", "arguments": {"reason": "no luck"}},
            "error",
            "The tool failed: no luck",
        ),
        (
            {"name": "slow", "arguments": {"seconds": 5}},
            "error",
            "The tool took longer than 1.5 s and was stopped.",
        ),
        ({"name": "chatty", "arguments": {"size": 1000}}, "done", "[output cut at 100 of 1000"),
    ],
    ids=["raises", "times-out", "too-long"],
)
async def test_a_failing_slow_or_long_tool_is_a_result_the_reply_goes_on_from(
    site, stub, call, status, output
):
    tess = login(site.url, "tess", "tess-pw")
    thread, ws = await ask(
        site, stub, tess, f"try {call['name']}", tool_calls=[[call]], tokens=["Went ", "on."]
    )
    received = await frames_until(ws, frames.is_terminal)
    (step,) = final_steps(received)
    assert step["status"] == status and output in step["output"]
    assert len(step["output"]) <= 100 + 50  # the cut, and a line that says so
    assert received[-1]["type"] == "complete" and received[-1]["status"] == "complete"
    saved = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    assert saved["steps"] == [step] and saved["content"] == "Went on."
    await ws.close()


async def test_the_thread_search_tool_never_sees_another_users_threads(site, stub):
    otto = login(site.url, "otto", "otto-pw")
    secret = otto.post("/api/threads/", json={"title": "Otto's zanzibar plans"}).json()
    assert secret["id"]
    tess = login(site.url, "tess", "tess-pw")
    _, ws = await ask(
        site,
        stub,
        tess,
        "find zanzibar",
        tool_calls=[[{"name": "search_threads", "arguments": {"query": "zanzibar"}}]],
    )
    (step,) = final_steps(await frames_until(ws, frames.is_terminal))
    assert step["status"] == "done"
    # Her own thread (its question names zanzibar) is found; Otto's is not.
    assert step["output"].startswith("Your conversations that mention 'zanzibar':\n- find zanzibar")
    assert "Otto" not in step["output"] and step["output"].count("\n- ") == 1
    await ws.close()


@pytest.mark.django_db(transaction=True)
async def test_the_responses_api_streams_the_same_tool_steps(stub, memory_layer, alice, settings):
    settings.AGENT_PROVIDER = "openai"  # the Responses API, at the stub
    stub.script(
        "two on responses",
        tool_calls=[
            [{"name": "calculate", "arguments": {"expression": "1/4"}}],
            [{"name": "calculate", "arguments": {"expression": "2**10"}}],
        ],
        tokens=["0.25 ", "and ", "1024."],
    )
    thread = await new_thread(alice, "titled")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("two on responses"))
    received = await frames_until_end(ws)
    assert [(s["status"], s["output"]) for s in final_steps(received)] == [
        ("done", "1/4 = 0.25"),
        ("done", "2**10 = 1024"),
    ]
    assert reply_text(received) == "0.25 and 1024."
    assert {r["path"] for r in stub.requests} == {"/v1/responses"}
    await ws.disconnect()


async def test_six_hostile_calculations_in_one_turn_never_stall_another_users_requests(site, stub):
    """Each is refused by its operands' sizes before it is computed, in a child process: the
    server's other requests (here /healthz, as another user's page would) keep answering."""
    tess = login(site.url, "tess", "tess-pw")
    calls = [{"name": "calculate", "arguments": {"expression": HOSTILE}}] * 6
    answered: list[float] = []

    async def another_user() -> None:
        async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
            while True:
                started = time.monotonic()
                assert (await http.get("/healthz")).status_code == 200
                answered.append(time.monotonic() - started)
                await asyncio.sleep(0.05)

    polling = asyncio.create_task(another_user())
    try:
        _, ws = await ask(site, stub, tess, "six hostile sums", tool_calls=[calls])
        received = await frames_until(ws, frames.is_terminal)
        await asyncio.sleep(0.3)
    finally:
        polling.cancel()
    assert answered and max(answered) < 2.0, f"another user waited {max(answered):.1f} s"
    steps = final_steps(received)
    assert len(steps) == 6
    assert all(s["status"] == "done" and "too large" in s["output"] for s in steps), steps
    await ws.close()


async def over_websocket(site, user, text: str) -> str:
    thread = user.post("/api/threads/", json={"title": text}).json()["id"]
    ws, _ = await socket(site, user, thread)
    await ws.send(json.dumps({"command": "start", "message": text}))
    await frames_until(ws, frames.is_terminal)
    await ws.close()
    return thread


async def over_sse(site, user, text: str) -> str:
    async with httpx.AsyncClient(
        base_url=site.url, cookies=user.cookies, headers=user.headers, timeout=30
    ) as http:
        async with http.stream("POST", "/api/stream/message", json={"message": text}) as answer:
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                if line.startswith("data: ") and frames.is_terminal(json.loads(line[6:])):
                    break
            return answer.headers["x-thread-id"]


async def over_chatkit(site, user, text: str) -> str:
    chatkit = ck.ChatKitClient(site.url, user)
    try:
        events = await chatkit.stream(ck.create(text))
    finally:
        await chatkit.close()
    return next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id


@pytest.mark.parametrize("transport", [over_websocket, over_sse, over_chatkit])
@pytest.mark.parametrize(
    "name, arguments, expected",
    [
        ("current_time", {}, r"\d\d:\d\d:\d\d \(UTC, UTC\+0000\)$"),
        ("calculate", {"expression": "19*23"}, r"^19\*23 = 437$"),
        ("search_threads", {"query": "quokka"}, r"^Your conversations .*\n- Earlier: quokka"),
    ],
)
async def test_every_built_in_tool_works_over_every_transport(
    site, stub, transport, name, arguments, expected
):
    """The WebSocket, SSE (POST /api/stream/message) and ChatKit (POST /api/chatkit) start the
    same reply; its tools run alike, the database reached the same way from each."""
    tess = login(site.url, "tess", "tess-pw")
    tess.post("/api/threads/", json={"title": "Earlier: quokka spotting"})
    text = f"use {name} {transport.__name__}"
    stub.script(text, tool_calls=[[{"name": name, "arguments": arguments}]], tokens=["Done."])
    thread = await transport(site, tess, text)
    saved = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    (step,) = saved["steps"]
    assert (step["name"], step["status"]) == (name, "done"), step["output"]
    assert re.search(expected, step["output"], re.MULTILINE), step["output"]
    assert saved["status"] == "complete" and saved["content"] == "Done."


async def test_a_tool_calls_long_arguments_are_shown_and_saved_cut(site, stub):
    tess = login(site.url, "tess", "tess-pw")
    expression = "1+" * 10_000 + "1"
    thread, ws = await ask(
        site,
        stub,
        tess,
        "a long sum",
        tool_calls=[[{"name": "calculate", "arguments": {"expression": expression}}]],
    )
    received = await frames_until(ws, frames.is_terminal)
    await ws.close()
    whole = json.dumps({"expression": expression})
    (step,) = final_steps(received)
    assert step["arguments"].startswith(whole[:100])
    assert step["arguments"].endswith(f"[arguments cut at 100 of {len(whole)} characters]")
    assert len(step["arguments"]) <= 100 + 50
    assert step["output"].startswith("The expression is too long (1000 characters at most)")
    saved = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    assert saved["steps"] == [step]
