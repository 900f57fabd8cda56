"""End to end over real daphne processes, PostgreSQL, Redis and WebSockets."""

import json
import uuid

import pytest
from websockets.asyncio.client import connect as ws_connect

from chat import frames
from tests import chatkit_client as ck
from tests.conftest import POSTGRES_TEST_URL, REDIS_TEST_URL, require, tcp_open
from tests.servers import Daphne, cookie_header, login, new_database, prepare, stub_env

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture(scope="module")
def cluster(stub_server, tmp_path_factory):
    """A daphne process on PostgreSQL and Redis with the stub as its model provider."""
    require("PostgreSQL", tcp_open(POSTGRES_TEST_URL, 5432))
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    database_url, drop = new_database(POSTGRES_TEST_URL)
    env = stub_env(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_TEST_URL,
    )
    prepare(env, {"alice": "alice-pw", "bob": "bob-pw"})
    server = Daphne(env).start()
    yield server
    server.stop()
    drop()


async def open_socket(server: Daphne, client, thread_id: str):
    """A WebSocket on the thread, as a browser on the same origin opens it."""
    return await ws_connect(
        f"{server.ws_url}/ws/threads/{thread_id}/",
        origin=server.url,
        additional_headers={"Cookie": cookie_header(client)},
    )


async def read_until_end(ws) -> list[dict]:
    received = []
    while True:
        frame = json.loads(await ws.recv())
        received.append(frame)
        if frames.is_terminal(frame):
            return received


@pytest.mark.asyncio
async def test_a_reply_streams_through_daphne_on_postgres_and_redis_and_is_saved(cluster, stub):
    tokens = ["Stream", "ing", " over", " real", " sockets", " works", "."]
    stub.script("real-stack", tokens=tokens, delay_ms=5)
    alice = login(cluster.url, "alice", "alice-pw")
    thread = alice.post("/api/threads/", json={}).json()

    async with await open_socket(cluster, alice, thread["id"]) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["active"] is None
        await ws.send(
            json.dumps(
                {"command": "start", "message": "real-stack", "client_id": str(uuid.uuid4())}
            )
        )
        received = await read_until_end(ws)

    assert [f["type"] for f in received[:2]] == ["message", "start"]
    assert received[-1]["type"] == "complete" and received[-1]["status"] == "complete"
    # A thread frame (its model or title told to every tab) may come between the reply's frames.
    assert {f["type"] for f in received[1:] if "seq" not in f} <= {"thread"}
    seqs = [f["seq"] for f in received[1:] if "seq" in f]
    assert seqs == list(range(len(seqs)))
    saved = alice.get(f"/api/threads/{thread['id']}/messages/").json()["results"]
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["content"] == "".join(tokens)
    assert saved[1]["status"] == "complete"
    assert saved[1]["metrics"]["totalTokens"] == len(tokens)


@pytest.mark.asyncio
async def test_sockets_are_the_owners_alone_on_a_real_server(cluster, stub):
    alice = login(cluster.url, "alice", "alice-pw")
    bob = login(cluster.url, "bob", "bob-pw")
    thread = alice.post("/api/threads/", json={}).json()
    async with await open_socket(cluster, bob, thread["id"]) as ws:
        await ws.wait_closed()
        assert ws.close_code == 4404
    async with await ws_connect(
        f"{cluster.ws_url}/ws/threads/{thread['id']}/", origin=cluster.url
    ) as ws:
        await ws.wait_closed()
        assert ws.close_code == 4401
    assert bob.get(f"/api/threads/{thread['id']}/messages/").status_code == 404


def test_health_checks_postgres_and_redis(cluster):
    import httpx

    health = httpx.get(cluster.url + "/healthz").json()
    assert health == {"status": "ok", "database": "ok", "redis": "ok"}


def test_health_checks_reuse_the_processs_redis_connection(cluster):
    import httpx
    import redis

    probe = redis.Redis.from_url(REDIS_TEST_URL)
    before = probe.info("stats")["total_connections_received"]
    for _ in range(20):
        assert httpx.get(cluster.url + "/healthz").json()["redis"] == "ok"
    opened = probe.info("stats")["total_connections_received"] - before
    probe.close()
    assert opened <= 5, f"{opened} Redis connections for 20 health checks"


def test_another_users_stream_is_a_quiet_404(cluster):
    alice, bob = login(cluster.url, "alice", "alice-pw"), login(cluster.url, "bob", "bob-pw")
    thread = alice.post("/api/threads/", json={"title": "private"}).json()["id"]
    logged = cluster.log.stat().st_size
    for _ in range(3):
        assert bob.get(f"/api/threads/{thread}/events/").status_code == 404
        answer = bob.post("/api/stream/message", json={"message": "hi", "thread_id": thread})
        assert answer.status_code == 404
        assert bob.get(f"/api/threads/{thread}/messages/").status_code == 404
        for request in (ck.add_message(thread, "hi"), ck.get_thread(thread)):
            chatkit = bob.post("/api/chatkit", content=request.model_dump_json())
            assert chatkit.status_code == 404
    with cluster.log.open() as log:
        log.seek(logged)
        written = log.read()
    assert "Traceback" not in written, written[-2000:]
