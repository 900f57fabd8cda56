"""Branches on the real stack (sockets, the API, the stub provider): an edit, a regenerate and a
switch keep every version, the model is given only the active path, every tab follows a switch,
a reply keeps its branch through a reconnect, and bad input changes nothing."""

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat.models import Thread
from tests.helpers import (
    connect,
    frames_until_end,
    new_thread,
    receive,
    reply_text,
    send,
    start_command,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def sent_to_model(stub) -> list[str]:
    """The texts of the last request the provider got, the system prompt left out."""
    last = [r for r in stub.requests if r["path"].endswith("/chat/completions")][-1]
    return [m["content"] for m in last["body"]["messages"] if m["role"] != "system"]


async def api(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def path_of(client: AsyncClient, thread_id) -> list[dict]:
    answer = await client.get(f"/api/threads/{thread_id}/messages/")
    assert answer.status_code == 200
    return answer.json()["results"]


async def switch(client: AsyncClient, thread_id, leaf):
    return await client.patch(
        f"/api/threads/{thread_id}/",
        json.dumps({"active_leaf": str(leaf)}),
        content_type="application/json",
    )


async def ask(ws, command: dict) -> list[dict]:
    await send(ws, command)
    return await frames_until_end(ws)


async def test_the_model_is_given_only_the_active_path_after_an_edit_a_regenerate_and_a_switch(
    stub, memory_layer, alice
):
    thread = await new_thread(alice, title="branches")
    ws = await connect(thread.id, alice)
    await receive(ws)
    first = (await ask(ws, start_command("q1")))[0]["message"]
    await ask(ws, start_command("q2 original"))
    path = await path_of(http := await api(alice), thread.id)
    q2 = path[2]

    await ask(ws, {"command": "edit", "message_id": q2["id"], "message": "q2 edited"})
    assert sent_to_model(stub) == ["q1", "Echo: q1", "q2 edited"]

    stub.script("q2 edited", tokens=["Another", " take"])
    redone = await ask(ws, {"command": "regenerate"})
    assert reply_text(redone) == "Another take"
    assert sent_to_model(stub) == ["q1", "Echo: q1", "q2 edited"], "not the old reply either"

    path = await path_of(http, thread.id)
    assert [m["content"] for m in path] == ["q1", "Echo: q1", "q2 edited", "Another take"]
    edited = path[2]
    assert edited["siblings"] == {"index": 1, "count": 2, "ids": [q2["id"], edited["id"]]}
    assert path[3]["siblings"]["count"] == 2 and path[3]["siblings"]["index"] == 1
    assert path[0]["parent_id"] is None and path[1]["parent_id"] == first["id"]

    answer = await switch(http, thread.id, q2["id"])  # back to the first version
    assert answer.status_code == 200, answer.content
    path = await path_of(http, thread.id)
    assert [m["content"] for m in path] == ["q1", "Echo: q1", "q2 original", "Echo: q2 original"]
    assert answer.json()["active_leaf"] == path[-1]["id"], "on through its latest descendant"

    await ask(ws, start_command("q3"))
    assert sent_to_model(stub) == ["q1", "Echo: q1", "q2 original", "Echo: q2 original", "q3"]
    exported = await http.get(f"/api/threads/{thread.id}/export/?format=json")
    every = exported.json()["messages"]
    assert len(every) == 9, "the export keeps every branch"
    assert all("parent_id" in m and "siblings" in m for m in every)
    await ws.disconnect()


async def test_every_tab_follows_a_switch_and_a_switch_while_a_reply_runs_is_refused(
    stub, memory_layer, alice
):
    thread = await new_thread(alice, title="tabs")
    ws, other_tab = await connect(thread.id, alice), await connect(thread.id, alice)
    await receive(ws), await receive(other_tab)
    await ask(ws, start_command("question"))
    await frames_until_end(other_tab)
    first_reply = (await path_of(http := await api(alice), thread.id))[-1]
    await ask(ws, {"command": "regenerate"})
    await frames_until_end(other_tab)

    answer = await switch(http, thread.id, first_reply["id"])
    assert answer.status_code == 200
    for tab in (ws, other_tab):
        heard = await receive(tab)
        assert heard["type"] == "thread"
        assert heard["thread"]["active_leaf"] == first_reply["id"]

    stub.script("busy", tokens=[f" w{i}" for i in range(200)], delay_ms=10)
    await send(ws, start_command("busy"))
    while (await receive(ws))["type"] != "token":
        pass
    before = await path_of(http, thread.id)
    refused = await switch(http, thread.id, first_reply["id"])
    assert refused.status_code == 409 and refused.json()["code"] == "busy"
    assert await path_of(http, thread.id) == before, "a refused switch changes nothing"
    await send(ws, {"command": "stop"})
    await ws.disconnect()
    await other_tab.disconnect()


async def test_a_reply_keeps_its_branch_through_a_reconnect(stub, memory_layer, alice):
    thread = await new_thread(alice, title="reconnect")
    ws = await connect(thread.id, alice)
    await receive(ws)
    asked = (await ask(ws, start_command("keep me")))[0]["message"]
    stub.script("keep me", tokens=[f" t{i}" for i in range(60)], delay_ms=10)
    await send(ws, {"command": "regenerate"})
    placed = (await receive(ws))["message"]
    await ws.disconnect()  # the tab drops mid-reply; the reply goes on

    again = await connect(thread.id, alice)
    ready = await receive(again)
    if ready["active"] is not None:  # still running: it resumes on its own branch
        assert ready["active"]["message_id"] == placed["id"]
        await frames_until_end(again)
    path = await path_of(await api(alice), thread.id)
    assert [m["id"] for m in path] == [asked["id"], placed["id"]]
    assert path[-1]["status"] == "complete" and path[-1]["content"].startswith(" t0 t1")
    await again.disconnect()


async def test_bad_input_is_refused_clearly_and_changes_nothing(stub, memory_layer, alice, bob):
    thread = await new_thread(alice, title="mine")
    theirs = await new_thread(bob, title="theirs")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await ask(ws, start_command("hello"))
    bob_ws = await connect(theirs.id, bob)
    await receive(bob_ws)
    their_message = (await ask(bob_ws, start_command("private")))[0]["message"]
    await bob_ws.disconnect()
    http = await api(alice)
    before = await path_of(http, thread.id)

    for leaf in (their_message["id"], uuid.uuid4(), "not-a-uuid"):
        answer = await switch(http, thread.id, leaf)
        assert answer.status_code == 400, (leaf, answer.content)
    assert (await switch(await api(bob), thread.id, before[0]["id"])).status_code == 404

    await send(ws, {"command": "edit", "message_id": their_message["id"], "message": "x"})
    refused = await receive(ws)
    assert refused["type"] == "error" and refused["code"] == "bad_request"
    assert await path_of(http, thread.id) == before
    kept = await database_sync_to_async(Thread.objects.get)(pk=thread.pk)
    assert str(kept.active_leaf_id) == before[-1]["id"]
    await ws.disconnect()
