"""A ChatKit reply is the engine's reply: two daphne processes on PostgreSQL and Redis, the
ChatKit request on one, a WebSocket on the other that sees it live and stops it."""

import asyncio
import json
import uuid

import pytest
from chatkit.types import NoticeEvent, ThreadItemDoneEvent
from websockets.asyncio.client import connect as ws_connect

from tests import chatkit_client as ck
from tests.servers import cookie_header, login, manage, shared_sites

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.asyncio]

TOKENS = [f" w{i}" for i in range(300)]


@pytest.fixture(scope="module")
def cluster(stub_server, tmp_path_factory):
    with shared_sites(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"alice": "alice-pw"},
        MAX_REPLIES_IN_FLIGHT="1",
    ) as (a, b):
        manage(
            a.env,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            "User.objects.create_superuser('op', password='op-pw')",
        )
        yield a, b


async def test_a_socket_on_the_other_process_sees_the_chatkit_reply_live_and_stops_it(
    cluster, stub
):
    a, b = cluster
    stub.script("cluster-long", tokens=TOKENS, delay_ms=15)
    alice_a, alice_b = login(a.url, "alice", "alice-pw"), login(b.url, "alice", "alice-pw")
    operator = login(b.url, "op", "op-pw")
    # Titled already, so no model-made title spends from the budget this test counts.
    thread_id = alice_a.post("/api/threads/", json={"title": "long"}).json()["id"]
    other_thread = alice_b.post("/api/threads/", json={}).json()["id"]
    used_before = alice_b.get("/api/usage/").json()["used"]
    ws = await ws_connect(
        f"{b.ws_url}/ws/threads/{thread_id}/",
        origin=b.url,
        additional_headers={"Cookie": cookie_header(alice_b)},
    )
    assert json.loads(await ws.recv())["type"] == "ready"

    chatkit = ck.ChatKitClient(a.url, alice_a)
    streaming = asyncio.create_task(chatkit.stream(ck.add_message(thread_id, "cluster-long")))
    shown_on_b, reply_id = "", None
    while len(shown_on_b) < 40:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if frame["type"] == "start":
            reply_id = frame["message_id"]
        if frame["type"] == "token":
            shown_on_b += frame["token"]

    # While it streams: it holds tokens of the user's budget, it is one of the replies the
    # user may have in flight (MAX_REPLIES_IN_FLIGHT=1 refuses a second), and the operator
    # sees it among the replies in flight.
    assert alice_b.get("/api/usage/").json()["reserved"] > 0
    other = await ws_connect(
        f"{b.ws_url}/ws/threads/{other_thread}/",
        origin=b.url,
        additional_headers={"Cookie": cookie_header(alice_b)},
    )
    await other.recv()
    await other.send(
        json.dumps({"command": "start", "message": "second", "client_id": str(uuid.uuid4())})
    )
    refused = json.loads(await asyncio.wait_for(other.recv(), 15))
    while refused["type"] == "thread":  # the user's thread list may change at any time
        refused = json.loads(await asyncio.wait_for(other.recv(), 15))
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    await other.close()
    assert reply_id in operator.get("/admin/chat/replyinflight/").text

    await ws.send(json.dumps({"command": "stop"}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if frame["type"] == "token":
            shown_on_b += frame["token"]
        if frame["type"] == "complete":
            break
    events = await asyncio.wait_for(streaming, 15)
    await ws.close()
    await chatkit.close()

    assert frame["status"] == "cancelled"
    done = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)][-1]
    assert done.id == reply_id
    assert isinstance(events[-1], NoticeEvent) and "stopped" in events[-1].message
    saved = alice_b.get(f"/api/threads/{thread_id}/messages/").json()["results"][-1]
    assert saved["status"] == "cancelled"
    assert saved["content"] == done.content[0].text == "".join(ck.deltas(events)) == shown_on_b
    assert 0 < len(saved["content"]) < len("".join(TOKENS))
    usage = alice_b.get("/api/usage/").json()
    assert usage["reserved"] == 0
    assert usage["used"] - used_before == saved["metrics"]["totalTokens"] > 0
    assert reply_id not in operator.get("/admin/chat/replyinflight/").text
