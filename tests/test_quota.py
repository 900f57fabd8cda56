"""The daily token budget (DAILY_TOKEN_BUDGET): counted from the provider's usage, titles
included, refused up front with `quota_exceeded`, and never overspent by replies started at
once, on one process or two."""

import asyncio
import contextlib
import json

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import Client
from websockets.asyncio.client import connect as ws_connect

from chat import frames, quota, services
from chat.models import Message, Thread
from tests.conftest import REDIS_TEST_URL, require, tcp_open
from tests.helpers import (
    connect,
    frames_until_end,
    make_thread,
    new_thread,
    receive,
    reply_text,
    send,
    start_command,
)
from tests.servers import Daphne, cookie_header, login, shared_sites, stub_site

pytestmark = [pytest.mark.asyncio]


@database_sync_to_async
def usage_of(user) -> dict:
    client = Client()
    client.force_login(user)
    return client.get("/api/usage/").json()


@database_sync_to_async
def message_count(thread: Thread) -> int:
    return Message.objects.filter(thread=thread).count()


def max_tokens_asked(stub) -> list[int]:
    """The max_tokens of each reply request the provider got (titles left out)."""
    asked = []
    for request in stub.requests:
        body = request.get("body") or {}
        if "Write a short title" not in json.dumps(body):
            asked.append(body.get("max_tokens"))
    return asked


@pytest.mark.django_db(transaction=True)
async def test_replies_and_titles_spend_the_budget_then_starts_are_refused(
    stub, memory_layer, alice, bob, settings
):
    settings.DAILY_TOKEN_BUDGET = 10
    settings.REPLY_MAX_TOKENS = 6
    stub.script("spend", tokens=["a ", "b ", "c ", "d "])  # the provider counts 4 tokens
    stub.script("Write a short title", tokens=["Spending"])  # and 1 for the title
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)

    await send(ws, start_command("spend"))
    assert reply_text(await frames_until_end(ws)) == "a b c d "
    while (await receive(ws)).get("thread", {}).get("title") != "Spending":
        pass  # the cut title, then the model's
    for _ in range(50):  # the title's tokens are settled just after its frame
        if (await usage_of(alice))["used"] == 5:
            break
        await asyncio.sleep(0.05)
    usage = await usage_of(alice)
    assert (usage["budget"], usage["used"], usage["reserved"], usage["remaining"]) == (10, 5, 0, 5)

    # 5 left: the next reply may ask for 5 tokens only (a real model stops there), then 1.
    await send(ws, start_command("spend"))
    assert reply_text(await frames_until_end(ws)) == "a b c d "
    await send(ws, start_command("spend"))
    assert reply_text(await frames_until_end(ws)) == "a "
    assert max_tokens_asked(stub) == [6, 5, 1]
    assert (await usage_of(alice))["remaining"] == 0

    before = await message_count(thread)
    await send(ws, start_command("spend"))
    refused = await receive(ws)
    assert refused["type"] == "error" and refused["code"] == "quota_exceeded"
    assert "message_id" not in refused and refused["recoverable"] is False
    assert await message_count(thread) == before, "a refused message is not saved"

    bobs = await connect((await new_thread(bob, "titled")).id, bob)
    await receive(bobs)
    await send(bobs, start_command("spend"))
    assert reply_text(await frames_until_end(bobs)) == "a b c d "
    for socket in (ws, bobs):
        await socket.disconnect()


@pytest.fixture(scope="module")
def two_processes(stub_server, tmp_path_factory):
    """Processes A and B on PostgreSQL and Redis, with a budget of five replies' max_tokens."""
    with shared_sites(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"quinn": "quinn-pw"},
        DAILY_TOKEN_BUDGET="500",
        REPLY_MAX_TOKENS="100",
        REPLIES_PER_MINUTE="0",
        MAX_REPLIES_IN_FLIGHT="0",
    ) as servers:
        yield servers


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
async def test_twenty_starts_at_once_on_two_processes_never_overspend(two_processes, stub):
    stub.script("race", tokens=["x"] * 30, delay_ms=40)  # 30 tokens over about a second
    stub.script("Write a short title", tokens=["Race"])
    user = login(two_processes[0].url, "quinn", "quinn-pw")
    secret = user.post("/api/chatkit/session").json()["client_secret"]
    headers = {"Authorization": f"Bearer {secret}"}

    async def start(client: httpx.AsyncClient, server: Daphne) -> tuple[int, str]:
        async with client.stream(
            "POST", f"{server.url}/api/stream/message", json={"message": "race"}, headers=headers
        ) as response:
            body = (await response.aread()).decode()
        return response.status_code, body

    async with httpx.AsyncClient(timeout=30) as client:
        results = await asyncio.gather(*(start(client, two_processes[i % 2]) for i in range(20)))
    accepted = [body for status, body in results if status == 200]
    refused = [json.loads(body) for status, body in results if status != 200]
    assert len(accepted) == 5, [status for status, _ in results]
    assert {r["code"] for r in refused} == {"quota_exceeded"} and len(refused) == 15
    assert all('"status": "complete"' in body for body in accepted)

    # Held 5 x 100 while they ran; each spent 30 and its title 1: 155 used, the rest free.
    for _ in range(100):
        usage = user.get("/api/usage/").json()
        if usage["reserved"] == 0 and usage["used"] == 155:
            break
        await asyncio.sleep(0.1)
    assert (usage["used"], usage["reserved"], usage["remaining"]) == (155, 0, 345)
    assert sum(max_tokens_asked(stub)) <= 500


@pytest.mark.django_db
def test_a_reply_whose_process_died_gives_its_held_tokens_back(alice, settings):
    settings.DAILY_TOKEN_BUDGET = 10_000
    settings.REPLY_MAX_TOKENS = 4000
    quota.reserve(user_id=alice.pk, tokens=4000)  # held by a reply whose process then died
    thread = make_thread(alice)
    reply = Message.objects.create(
        thread=thread, role="assistant", status="streaming", content="x" * 400, held_tokens=4000
    )
    assert quota.standing(user_id=alice.pk)["remaining"] == 6000
    assert services.reply_interrupt(reply_id=reply.id, content=None)
    standing = quota.standing(user_id=alice.pk)
    assert (standing["reserved"], standing["used"]) == (0, 100)  # about 4 characters a token


@pytest.mark.django_db
def test_a_dead_replys_hold_gives_back_what_it_held_and_never_another_replys(alice, settings):
    settings.DAILY_TOKEN_BUDGET = 10_000
    settings.REPLY_MAX_TOKENS = 4096
    holds = [quota.reserve(user_id=alice.pk, tokens=4096) for _ in range(3)]
    assert [hold.tokens for hold in holds] == [4096, 4096, 1808]  # the last gets what is left
    thread = make_thread(alice)
    dead = Message.objects.create(
        thread=thread, role="assistant", status="streaming", content="x" * 40, held_tokens=1808
    )
    assert services.reply_interrupt(reply_id=dead.id, content=None)
    standing = quota.standing(user_id=alice.pk)
    assert standing["reserved"] == 8192, "the two live replies still hold theirs"
    assert standing["used"] == 10


@pytest.fixture(scope="module")
def laptop(stub_server, tmp_path_factory):
    """One process on SQLite with its live records in Redis (they outlive the process), a
    tool and a budget."""
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    with stub_site(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"tess": "tess-pw"},
        AGENT_TOOLS="chat.tools.current_time",
        DAILY_TOKEN_BUDGET="10000",
        REPLY_MAX_TOKENS="4096",
        REPLIES_PER_MINUTE="0",
        BUFFER_SIZE="1",
        OWNER_TTL_SECONDS="1",
        REDIS_URL=REDIS_TEST_URL,
    ) as server:
        yield server


def reply_requests(stub) -> list[dict]:
    return [
        r["body"]
        for r in stub.requests
        if r["path"].endswith("/chat/completions")
        and "Write a short title" not in json.dumps(r["body"])
    ]


@contextlib.asynccontextmanager
async def started(site, client, text: str):
    """A new thread of the client's, a socket on it, and `text` sent: (thread id, socket)."""
    thread = client.post("/api/threads/", json={"title": text}).json()["id"]
    async with ws_connect(
        f"{site.ws_url}/ws/threads/{thread}/",
        origin=site.url,
        additional_headers={"Cookie": cookie_header(client)},
    ) as ws:
        await ws.recv()
        await ws.send(json.dumps({"command": "start", "message": text}))
        yield thread, ws


@pytest.mark.slow
async def test_a_reply_that_calls_tools_turn_after_turn_spends_at_most_its_hold(laptop, stub):
    # A model that calls a tool 9 turns running and writes 4,000 tokens of it each turn (as
    # many as it is allowed: a real model stops at max_tokens).
    stub.script(
        "keep calling",
        tool_calls=[[{"name": "current_time", "arguments": {}}]] * 9,
        tokens=["never ", "reached"],
        usage={"completion_tokens": 4000},
    )
    tess = login(laptop.url, "tess", "tess-pw")
    async with started(laptop, tess, "keep calling") as (thread, ws):
        while "seq" not in (end := json.loads(await asyncio.wait_for(ws.recv(), 15))) or not (
            frames.is_terminal(end)
        ):
            pass
    assert end["type"] == "error" and end["code"] == "quota_exceeded"
    asked = [body["max_tokens"] for body in reply_requests(stub)]
    assert asked[0] == 4096 and sum(min(a, 4000) for a in asked) <= 4096, asked
    # The hold is settled once the reply's task ends, just after its terminal frame left.
    for _ in range(100):
        usage = tess.get("/api/usage/").json()
        if usage["reserved"] == 0:
            break
        await asyncio.sleep(0.1)
    assert usage["used"] <= 4096 and usage["reserved"] == 0, usage
    reply = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    assert reply["status"] == "error" and reply["steps"], "the steps taken are kept"


@pytest.mark.slow
@pytest.mark.redis
async def test_a_killed_processs_hold_settles_without_anyone_opening_the_thread(laptop, stub):
    stub.script("die mid-reply", tokens=[f" w{i}" for i in range(400)], delay_ms=30)
    tess = login(laptop.url, "tess", "tess-pw")
    async with started(laptop, tess, "die mid-reply") as (thread, ws):
        shown = 0
        while shown < 15:
            shown += json.loads(await asyncio.wait_for(ws.recv(), 15))["type"] == "token"
        assert tess.get("/api/usage/").json()["reserved"] == 4096
        laptop.kill()
    laptop.start()
    for _ in range(100):  # no one opens the thread: the process sweeps on its own
        usage = tess.get("/api/usage/").json()
        if usage["reserved"] == 0:
            break
        await asyncio.sleep(0.2)
    assert usage["reserved"] == 0, usage
    assert usage["used"] >= 15, "the frames shown are paid for"
    reply = tess.get(f"/api/threads/{thread}/messages/").json()["results"][-1]
    assert reply["status"] == "interrupted" and reply["content"]
