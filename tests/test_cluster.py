"""Two daphne processes on Redis and PostgreSQL: one reply, seen and stopped from either; the
thread list heard on the other process."""

import asyncio
import json
import time
import uuid

import pytest
from websockets.asyncio.client import connect as ws_connect

from chat import frames
from tests.servers import Daphne, cookie_header, login, shared_sites

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.asyncio]

OWNER_TTL = 2


@pytest.fixture(scope="module")
def cluster(stub_server, tmp_path_factory):
    """Processes A and B sharing PostgreSQL and Redis, the stub as their model provider."""
    with shared_sites(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"alice": "alice-pw"},
        OWNER_TTL_SECONDS=str(OWNER_TTL),
        CHECKPOINT_SECONDS="2",
    ) as (a, b):
        yield a, b


class Socket:
    """A browser-like WebSocket on one process, keeping the text it has been shown."""

    def __init__(self, server: Daphne, client, thread_id: str) -> None:
        self.server, self.client, self.thread_id = server, client, thread_id
        self.received: list[dict] = []
        self.text = ""
        self.last_seq = -1
        self.resyncing = False  # after asking for `resync`: frames before `ready` are stale

    async def open(self) -> "Socket":
        self.ws = await ws_connect(
            f"{self.server.ws_url}/ws/threads/{self.thread_id}/",
            origin=self.server.url,
            additional_headers={"Cookie": cookie_header(self.client)},
        )
        self.apply_ready(await self.recv())
        return self

    async def recv(self, timeout: float = 15) -> dict:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.received.append(frame)
        return frame

    def apply_ready(self, ready: dict) -> None:
        assert ready["type"] == "ready"
        if ready["active"]:
            self.text = ready["active"]["content"]
            self.last_seq = ready["active"]["seq"]

    async def send(self, payload: dict) -> None:
        await self.ws.send(json.dumps(payload))

    async def start(self, message: str) -> None:
        await self.send({"command": "start", "message": message, "client_id": str(uuid.uuid4())})

    async def follow(self, *, tokens: int | None = None) -> dict:
        """Apply frames as a client does, until the reply ends (or `tokens` token frames)."""
        seen = 0
        while True:
            frame = await self.recv()
            if frame["type"] == "ready":
                self.apply_ready(frame)
                self.resyncing = False
                continue
            if "seq" not in frame or self.resyncing:
                continue
            assert frame["seq"] == self.last_seq + 1, (frame, self.last_seq)
            self.last_seq = frame["seq"]
            if frame["type"] == "token":
                self.text += frame["token"]
                seen += 1
                if tokens is not None and seen >= tokens:
                    return frame
            if frames.is_terminal(frame):
                return frame

    async def close(self) -> None:
        await self.ws.close()


async def test_the_users_socket_on_one_process_hears_of_threads_changed_through_the_other(
    cluster,
):
    a, b = cluster
    alice = login(a.url, "alice", "alice-pw")
    async with ws_connect(
        f"{b.ws_url}/ws/user/",
        origin=b.url,
        additional_headers={"Cookie": cookie_header(alice)},
    ) as on_b:

        async def frame() -> dict:
            return json.loads(await asyncio.wait_for(on_b.recv(), 15))

        assert (await frame())["type"] == "ready"
        made = alice.post("/api/threads/", json={"title": "made on A"}).json()
        assert (await frame())["thread"]["title"] == "made on A"
        alice.patch(f"/api/threads/{made['id']}/", json={"pinned": True})
        assert (await frame())["thread"]["pinned"] is True
        assert alice.delete(f"/api/threads/{made['id']}/").status_code == 204
        assert (await frame()) | {"ts": 0} == {
            "type": "thread_deleted",
            "ts": 0,
            "thread_id": made["id"],
        }


def saved_reply(client, thread_id: str) -> dict:
    return client.get(f"/api/threads/{thread_id}/messages/").json()["results"][-1]


async def test_sockets_on_both_processes_see_every_frame_and_stop_through_b_ends_it_on_a(
    cluster, stub
):
    a, b = cluster
    stub.script("two-procs", tokens=[f" w{i}" for i in range(300)], delay_ms=15)
    alice = login(a.url, "alice", "alice-pw")
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    on_a = await Socket(a, alice, thread_id).open()
    on_b = await Socket(b, alice, thread_id).open()

    await on_a.start("two-procs")
    await on_a.follow(tokens=10)
    await on_b.follow(tokens=5)
    await on_b.send({"command": "stop"})
    end_a, end_b = await on_a.follow(), await on_b.follow()

    assert end_a["status"] == end_b["status"] == "cancelled"
    assert on_a.text == on_b.text
    types_a = [f["type"] for f in on_a.received if "seq" in f]
    types_b = [f["type"] for f in on_b.received if "seq" in f]
    assert types_a == types_b and types_a[0] == "start"
    reply = saved_reply(alice, thread_id)
    assert reply["status"] == "cancelled"
    assert reply["content"] == on_a.text
    assert 0 < len(reply["content"]) < len("".join(f" w{i}" for i in range(300)))
    await on_a.close()
    await on_b.close()


@pytest.mark.parametrize("reconnect_to", ["same", "other"])
async def test_a_socket_that_drops_mid_reply_resumes_on_either_process_without_gap_or_duplicate(
    cluster, stub, reconnect_to
):
    a, b = cluster
    tokens = [f" r{i}" for i in range(120)]
    stub.script("drop-and-back", tokens=tokens, delay_ms=15)
    alice = login(a.url, "alice", "alice-pw")
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    first = await Socket(a, alice, thread_id).open()
    await first.start("drop-and-back")
    await first.follow(tokens=5)
    await first.close()
    await asyncio.sleep(0.3)

    again = Socket(a if reconnect_to == "same" else b, alice, thread_id)
    again.text, again.last_seq = "", -1
    await again.open()
    assert again.last_seq > 5, "ready carried the snapshot of the reply in flight"
    end = await again.follow()
    assert end["status"] == "complete"
    assert again.text == "".join(tokens) == saved_reply(alice, thread_id)["content"]
    await again.close()


async def test_a_dropped_frame_is_healed_by_resync(cluster, stub):
    a, b = cluster
    tokens = [f" s{i}" for i in range(100)]
    stub.script("lossy", tokens=tokens, delay_ms=15)
    alice = login(a.url, "alice", "alice-pw")
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    sock = await Socket(b, alice, thread_id).open()
    await sock.start("lossy")
    await sock.follow(tokens=3)
    lost = await sock.recv()  # as if the layer dropped it: never applied
    assert lost["type"] == "token"
    gap = await sock.recv()
    assert gap["seq"] > sock.last_seq + 1, "the client sees a gap"
    await sock.send({"command": "resync"})
    sock.resyncing = True
    end = await sock.follow()
    assert end["status"] == "complete"
    assert sock.text == "".join(tokens) == saved_reply(alice, thread_id)["content"]
    await sock.close()


async def test_a_reply_whose_process_is_killed_is_saved_interrupted_with_the_text_shown(
    cluster, stub
):
    a, b = cluster
    tokens = [f" k{i:02d}"[-4:] for i in range(1000)]
    stub.script("kill-me", tokens=tokens, delay_ms=20)
    alice = login(a.url, "alice", "alice-pw")
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    on_a = await Socket(a, alice, thread_id).open()
    on_b = await Socket(b, alice, thread_id).open()
    await on_a.start("kill-me")
    await on_b.follow(tokens=5)
    await asyncio.sleep(3)  # past a checkpoint: the text saved must not be the checkpoint's
    a.kill()
    killed_at = time.monotonic()

    # B learns of the death at a heartbeat after A's owner record expires; frames A sent
    # before it died arrive first.
    told = None
    while told is None and time.monotonic() - killed_at < OWNER_TTL + 10:
        await on_b.send({"command": "heartbeat"})
        while True:
            frame = await on_b.recv()
            if frame["type"] == "token":
                assert frame["seq"] == on_b.last_seq + 1
                on_b.text += frame["token"]
                on_b.last_seq = frame["seq"]
            elif frame["type"] == "error":
                told = frame
                break
            elif frame["type"] == "heartbeat":
                break
        if told is None:
            await asyncio.sleep(0.5)
    assert told is not None and told["code"] == "interrupted"
    shown = on_b.text

    a.start()
    reply = saved_reply(login(a.url, "alice", "alice-pw"), thread_id)
    assert reply["status"] == "interrupted"
    assert told["message_id"] == reply["id"]
    # The terminal frame follows the last frame shown; had one been lost with the process,
    # the client would see a gap and read the saved text instead.
    assert told["seq"] == on_b.last_seq + 1
    # Streamed on past the first checkpoint (2 s: 100 tokens of 4 characters at 20 ms).
    assert len(shown) > 100 * 4
    assert reply["content"] == shown
    await on_b.close()
