"""Infrastructure faults under load: a PostgreSQL or Redis restart, a killed or stopped process.

The module starts its own PostgreSQL and Redis on free loopback ports (never the machine's
shared ones, so they can be restarted) and migrates once; each scenario takes a fresh copy of
that database and an emptied Redis, starts a stub provider and two daphne processes, runs users
that send replies one after another over WebSockets as the browser does, injects the fault
while replies stream, and checks every reply against the provider's script and the database
(scripts/faults.py; `make chaos` runs the same at 100 users x 5 replies).
"""

import asyncio
import json
import shutil
import signal
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from scripts.faults import FAULTS, Backing, run_scenario
from tests.conftest import require
from tests.servers import Daphne, cookie_header, login, prepare, stub_env

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

OUTAGES = ("pg-restart", "redis-restart", "redis-restart-first-token")
USERS = 8


@pytest.fixture(scope="module")
def backing(tmp_path_factory):
    """The module's private PostgreSQL (one initdb) and Redis, which every test's faults hit."""
    require("redis-server", shutil.which("redis-server") is not None)
    require("PostgreSQL's initdb", shutil.which("initdb") is not None)
    backing = Backing(tmp_path_factory.mktemp("backing")).start()
    try:
        yield backing
    finally:
        backing.stop()


@pytest.mark.parametrize("fault", FAULTS)
def test_no_reply_is_lost_doubled_corrupted_or_left_stuck(fault, backing, tmp_path):
    # A short drain, so SIGTERM meets replies that must be interrupted, not only finished.
    tally = asyncio.run(
        run_scenario(
            fault,
            users=USERS,
            replies=2,
            tokens=60,
            delay_ms=40,
            env={"DRAIN_SECONDS": "1"},
            deadline_seconds=45,  # a stuck reply shows in the tally, inside pytest's timeout
            workdir=tmp_path,
            log=lambda line: None,
            backing=backing,
        )
    )
    report = "\n".join([tally.row(), *tally.details])
    assert tally.ok(), report
    if fault in OUTAGES:
        # Riding the outage out, not ending replies quickly with an error, is the point.
        assert tally.complete == tally.started == 16, report
    else:
        assert tally.other_terminal > 0, "the fault met replies in flight: " + report
        assert set(tally.statuses) <= {"complete", "interrupted"}, report


@pytest.fixture
def private_site(stub_server, backing, tmp_path):
    """One daphne process on a fresh database of the private PostgreSQL and the emptied
    private Redis, with a short drain."""
    env = stub_env(stub_server.url, tmp_path, REDIS_URL=backing.redis.url, DRAIN_SECONDS="2")
    env["DATABASE_URL"] = backing.database(env, users=USERS)  # the scenarios' template
    prepare(env, {"alice": "alice-pw-4711"})
    server = Daphne(env).start()
    try:
        yield server, backing.pg, backing.redis
    finally:
        server.stop()


def test_health_check_reports_each_outage_while_it_lasts(private_site):
    server, postgres, redis = private_site
    assert httpx.get(server.url + "/healthz").status_code == 200
    postgres.stop()
    down = httpx.get(server.url + "/healthz", timeout=15)
    assert down.status_code == 503 and down.json()["database"].startswith("error")
    postgres.start()
    redis.stop()
    down = httpx.get(server.url + "/healthz", timeout=15)
    assert down.status_code == 503 and down.json()["redis"].startswith("error")
    redis.start()
    assert httpx.get(server.url + "/healthz").json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
    }


@pytest.mark.asyncio
async def test_sigterm_drains_saves_what_was_shown_and_refuses_new_replies(private_site, stub):
    server, _, _ = private_site
    stub.script("drain-long", tokens=[f" d{i}" for i in range(500)], delay_ms=20)
    alice = login(server.url, "alice", "alice-pw-4711")
    threads = [alice.post("/api/threads/", json={}).json()["id"] for _ in range(2)]
    sockets = []
    for thread_id in threads:
        ws = await ws_connect(
            f"{server.ws_url}/ws/threads/{thread_id}/",
            origin=server.url,
            additional_headers={"Cookie": cookie_header(alice)},
        )
        assert json.loads(await ws.recv())["type"] == "ready"
        sockets.append(ws)
    running, late = sockets
    await running.send(
        json.dumps({"command": "start", "message": "drain-long", "client_id": str(uuid.uuid4())})
    )
    shown, frames_ = "", []
    while len(frames_) < 10:
        frame = json.loads(await running.recv())
        frames_.append(frame)
        shown += frame.get("token", "")

    server.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    health = await asyncio.to_thread(httpx.get, server.url + "/healthz")
    assert (health.status_code, health.json()["process"]) == (503, "draining")
    await late.send(
        json.dumps({"command": "start", "message": "too late", "client_id": str(uuid.uuid4())})
    )
    refusal = json.loads(await late.recv())
    assert (refusal["type"], refusal["code"], refusal["recoverable"]) == (
        "error",
        "interrupted",
        True,
    )
    assert "message_id" not in refusal

    while True:
        frame = json.loads(await running.recv())
        frames_.append(frame)
        if frame["type"] != "token":
            break
        shown += frame["token"]
    assert frame["type"] == "error" and frame["code"] == "interrupted"
    seqs = [f["seq"] for f in frames_ if "seq" in f]
    assert seqs == list(range(len(seqs))), "every frame, the terminal one included, in order"
    started = time.monotonic()
    assert server.process.wait(30) == 0, "the process exits by itself after draining"
    assert time.monotonic() - started < 10

    log = server.log.read_text()
    assert "shutting down: draining 1 replies" in log
    assert "0 replies finished, 1 interrupted" in log
    server.start()
    saved = (
        login(server.url, "alice", "alice-pw-4711")
        .get(f"/api/threads/{threads[0]}/messages/")
        .json()["results"]
    )
    assert [m["role"] for m in saved] == ["user", "assistant"], "the late message was not kept"
    assert saved[-1]["status"] == "interrupted"
    assert saved[-1]["content"] == shown and len(shown) > 0
    late_saved = alice.get(f"/api/threads/{threads[1]}/messages/").json()["results"]
    assert late_saved == []
