"""One user cannot starve the rest: caps on open sockets and streams, on commands per socket,
and on how long an event stream lives (each a setting; README's configuration table)."""

import asyncio

import pytest
from django.test import AsyncClient

from chat import limits
from tests.helpers import connect, new_thread, receive, send, session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def forget_counts(layer: str, *users) -> None:
    """User ids repeat across tests on a shared Redis: start from no open sockets."""
    if layer != "memory":
        await limits._client().delete(*(f"chat:sockets:{user.pk}" for user in users))


async def close_code(ws, timeout: float = 5) -> int:
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


async def event_stream(user, thread_id) -> tuple[int, object]:
    client = AsyncClient()
    client.cookies["sessionid"] = (await session_cookie(user)).partition("=")[2]
    response = await client.get(f"/api/threads/{thread_id}/events/")
    return response.status_code, response


async def test_a_user_past_max_sockets_is_closed_with_4429_and_others_are_not(
    layer, alice, bob, settings
):
    settings.MAX_SOCKETS_PER_USER = 3
    await forget_counts(layer, alice, bob)
    thread = await new_thread(alice)
    sockets = [await connect(thread.id, alice) for _ in range(2)]
    for ws in sockets:
        assert (await receive(ws))["type"] == "ready"
    # An event stream counts too: the third of three.
    status, stream = await event_stream(alice, thread.id)
    assert status == 200
    chunks = stream.streaming_content
    assert b"retry" in await asyncio.wait_for(anext(chunks), 5)

    refused = await connect(thread.id, alice)
    assert await close_code(refused) == 4429
    status, response = await event_stream(alice, thread.id)
    assert status == 429 and b"rate_limited" in response.content

    bobs = await connect((await new_thread(bob)).id, bob)  # bob is not held back by alice
    assert (await receive(bobs))["type"] == "ready"

    await sockets[0].disconnect()  # one closes: another may open
    again = await connect(thread.id, alice)
    assert (await receive(again))["type"] == "ready"
    await chunks.aclose()
    for ws in (sockets[1], again, bobs):
        await ws.disconnect()


async def test_commands_past_the_rate_are_refused_once_and_the_socket_stays_open(
    memory_layer, alice, settings
):
    settings.COMMANDS_PER_SECOND = 1  # bursts of 2
    ws = await connect((await new_thread(alice)).id, alice)
    await receive(ws)
    for _ in range(12):
        await send(ws, {"command": "heartbeat"})
    answers = []
    while not await ws.receive_nothing(timeout=0.5):
        answers.append(await receive(ws))
    kinds = [(f["type"], f.get("code")) for f in answers]
    assert kinds.count(("error", "rate_limited")) == 1, kinds  # a flood is not echoed back
    assert 2 <= kinds.count(("heartbeat", None)) < 12, kinds
    await asyncio.sleep(2.1)  # the bucket refills: the socket works as before
    await send(ws, {"command": "heartbeat"})
    assert (await receive(ws))["type"] == "heartbeat"
    await ws.disconnect()


async def test_an_event_stream_ends_after_its_maximum_lifetime(memory_layer, alice, settings):
    settings.SSE_MAX_SECONDS = 0.5
    thread = await new_thread(alice)
    status, stream = await event_stream(alice, thread.id)
    assert status == 200

    async def drain() -> bytes:
        return b"".join([chunk async for chunk in stream.streaming_content])

    body = await asyncio.wait_for(drain(), 5)  # it ends by itself; EventSource reconnects
    assert b'"type": "ready"' in body
