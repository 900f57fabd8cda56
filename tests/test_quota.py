"""The daily token budget (DAILY_TOKEN_BUDGET): counted from the provider's usage, titles
included, refused up front with `quota_exceeded`, and never overspent by replies started at
once, on one process or two."""

import asyncio
import json

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import quota, services
from chat.models import Message, Thread
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
from tests.servers import Daphne, login, shared_sites

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
    assert await usage_of(alice) | {"resets_at": ""} == {
        "day": (await usage_of(alice))["day"],
        "budget": 10,
        "used": 5,
        "reserved": 0,
        "remaining": 5,
        "resets_at": "",
    }

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
        thread=thread, role="assistant", status="streaming", content="x" * 400
    )
    assert quota.standing(user_id=alice.pk)["remaining"] == 6000
    assert services.reply_interrupt(reply_id=reply.id, content=None)
    standing = quota.standing(user_id=alice.pk)
    assert (standing["reserved"], standing["used"]) == (0, 100)  # about 4 characters a token
