"""Fault-and-load runner: many users on two daphne processes, one infrastructure fault.

Each scenario starts a private deployment (its own PostgreSQL, Redis, stub provider process and
two daphne processes), runs `users` browser-like WebSocket clients that each send `replies`
messages one after another, injects one fault while many replies are in flight, then checks
every reply against the stub's script and the saved messages and returns a `Tally`.

Used by the fault tests (small numbers) and by `make chaos` (bench/chaos.py).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import math
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scripts.instances import PostgresInstance, RedisInstance
from scripts.processes import NO_USER_LIMITS, ROOT, Daphne, manage, new_database, server_env

FAULTS: tuple[str, ...] = (
    "pg-restart",
    "redis-restart",
    "redis-restart-first-token",
    "sigkill",
    "sigterm",
)
NO_FAULT = "none"
"""The sanity scenario: the same load and checks with no fault; its tally must be clean."""

TERMINAL = frozenset({"complete", "cancelled", "error", "interrupted"})
OWNER_TTL_SECONDS = 3
PASSWORD = "chaos-password-4711"
STUB_MODEL = "stub-model"
STUB_KEY = "chaos-key"  # the key the private stub answers, given to the product
# The round (0-based) during which the fault hits: every user starts round 0 at the same
# moment (a barrier), so that is when the most replies are in flight together.
FAULT_ROUND = 0
FIRST_TOKEN_DELAY_MS = 4000
# Client behaviour, as the browser client's but with the brief's faster heartbeat.
HEARTBEAT_SECONDS = 2.0
SILENT_SECONDS = 10.0  # no frame at all for this long: the socket is dead, replace it
BACKOFF_BASE = 0.2
BACKOFF_CAP = 2.0
MAX_SEND_ATTEMPTS = 60
ACK_SECONDS = 10.0  # a `start` with no answer at all for this long is sent again
REFETCH_EVERY = 2.0  # at most one messages refetch per user this often
SETTLE_SECONDS = 15.0
MAX_DETAILS = 20
STREAM_TRIGGER_TOKENS = 3

Log = Callable[[str], Any]


# --- the tally ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one scenario did to the replies: every send lands in exactly one of complete,
    other_terminal, lost, duplicated, corrupted, stuck (`started` counts accepted sends)."""

    fault: str
    users: int = 0
    replies: int = 0
    started: int = 0
    complete: int = 0
    other_terminal: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    stuck: int = 0
    lost_unanswered: int = 0  # accepted, but no assistant row was ever saved
    lost_refused: int = 0  # refused for good (retries exhausted, or not recoverable)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the runner did, not failures
    counters: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0  # wall time of the scenario, set-up and tear-down included
    load_seconds: float = 0.0  # from the first send to the last user's end
    fault_at: float | None = None  # seconds after the first send
    fault_seconds: float | None = None  # how long the injection took (outage, restart)
    p50: float | None = None  # send to end, seconds, of replies that overlapped the fault
    p99: float | None = None
    first_complete_after_fault: float | None = None  # seconds from the injection
    # How late reply frames reached the clients (client clock minus the frame's `ts`): the
    # channel layer's backlog, in seconds.
    frame_delay_p50: float | None = None
    frame_delay_p99: float | None = None
    frame_delay_max: float | None = None
    workdir: str = ""

    def ok(self) -> bool:
        """No reply lost, duplicated, corrupted or stuck, and every send accepted."""
        bad = self.lost + self.duplicated + self.corrupted + self.stuck
        return bad == 0 and self.started == self.users * self.replies

    @staticmethod
    def header() -> str:
        """The markdown table header that `row()` fits."""
        names = [
            "fault",
            "started",
            "complete",
            "other terminal",
            "lost",
            "duplicated",
            "corrupted",
            "stuck",
            "seconds",
            "fault at s",
            "fault took s",
            "p50 s",
            "p99 s",
            "1st complete after s",
            "saved statuses",
        ]
        return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)

    def row(self) -> str:
        """One markdown table row."""

        def num(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        statuses = " ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        cells = [
            self.fault,
            f"{self.started}/{self.users * self.replies}",
            self.complete,
            self.other_terminal,
            self.lost,
            self.duplicated,
            self.corrupted,
            self.stuck,
            f"{self.seconds:.0f}",
            num(self.fault_at),
            num(self.fault_seconds),
            num(self.p50),
            num(self.p99),
            num(self.first_complete_after_fault),
            statuses or "-",
        ]
        return "| " + " | ".join(str(c) for c in cells) + " |"


# --- one user's browser-like client ---------------------------------------------------------


@dataclass
class Send:
    """One message a user sends and what the user was shown of its reply."""

    user: int
    round: int
    tag: str
    client_id: str
    expected: str
    sent_at: float | None = None  # loop time of the first attempt
    attempts: int = 0
    outstanding_since: float | None = None  # an attempt not answered yet
    retry_at: float = 0.0
    refused: str = ""  # the code it was refused with for good
    user_message_id: str | None = None
    reply_id: str | None = None
    last_seq: int = -1
    text: str = ""
    shown: str = ""  # the text shown live when the database's row ended the reply instead
    token_frames: int = 0
    status: str | None = None  # the client's final status
    ended_by: str = ""  # "frame" or "api"
    ended_at: float | None = None
    stuck: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def shown_tokens(self) -> int:
        """How many of the script's tokens the client shows (each has one colon)."""
        return self.text.count(":")

    @property
    def in_flight(self) -> bool:
        """Sent and not ended for the client."""
        return self.sent_at is not None and self.status is None and not self.stuck


@dataclass
class Endpoint:
    """One daphne process as clients address it."""

    http: str
    ws: str


class UserClient:
    """One user: one thread, one WebSocket, sends one message at a time (like protocol.js)."""

    def __init__(self, scenario: Scenario, index: int, cookie: str, thread_id: str) -> None:
        self.scenario = scenario
        self.index = index
        self.cookie = cookie
        self.thread_id = thread_id
        self.sends: list[Send] = []
        self.current: Send | None = None
        self.previous_ids: set[str] = set()
        self.ws: ClientConnection | None = None
        self.ready_seen = False  # the current socket's `ready` has come
        self.connected = asyncio.Event()  # set at a socket's first `ready`
        self.resyncing = False
        self.resync_at = 0.0
        self.frames_since_heartbeat = 0
        self.last_frame_at = 0.0
        self.wake = asyncio.Event()
        self.refetching = False
        self.refetch_again = False
        self.last_refetch = -math.inf
        self.counters: collections.Counter = collections.Counter()
        self.finished_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        # What this client saw and did, token frames left out: written to the workdir for a
        # user whose replies failed, to tell a runner bug from a product bug.
        self.trace: collections.deque[str] = collections.deque(maxlen=400)
        self.failed = False

    def _trace(self, line: str) -> None:
        origin = self.scenario.go_at or 0.0
        self.trace.append(f"{_now() - origin:8.2f} {line}")

    # -- life --

    async def live(self, go: asyncio.Event) -> None:
        """Connect, wait for everybody, then send every message in turn."""
        connection = asyncio.create_task(self._connection_loop(), name=f"u{self.index}-socket")
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    await self.connected.wait()
            await go.wait()
            for send in self.sends:
                await self._reply(send)
        finally:
            self.finished_at = _now()
            connection.cancel()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await connection
            if self.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(), 2)

    async def _reply(self, send: Send) -> None:
        """Send one message (resending the same client_id when refused) until its reply ends
        for the client or the deadline passes."""
        self.current = send
        send.sent_at = _now()
        deadline = send.sent_at + self.scenario.deadline_seconds
        while send.status is None:
            now = _now()
            if now >= deadline:
                send.stuck = True
                break
            if send.refused:
                break
            if send.outstanding_since is not None and now - send.outstanding_since > ACK_SECONDS:
                # No answer at all: the command may have died with a process. Same client_id.
                self.counters["ack_timeouts"] += 1
                send.outstanding_since = None
            if self._may_send(send, now):
                await self._send_start(send)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await self.wake.wait()
        if send.reply_id:
            self.previous_ids.add(send.reply_id)
        self.current = None

    def _may_send(self, send: Send, now: float) -> bool:
        return (
            send.reply_id is None
            and send.outstanding_since is None
            and now >= send.retry_at
            and self.ready_seen
            and self.ws is not None
        )

    async def _send_start(self, send: Send) -> None:
        if send.attempts >= MAX_SEND_ATTEMPTS:
            send.refused = send.refused or "retries exhausted"
            return
        send.attempts += 1
        if send.attempts > 1:
            self.counters["resends"] += 1
        send.outstanding_since = _now()
        message = {"command": "start", "message": f"chaos {send.tag}", "client_id": send.client_id}
        await self._send_json(message)

    async def _send_json(self, payload: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None:
            return
        if payload.get("command") != "heartbeat":
            self._trace(f"-> {json.dumps(payload)}")
        await self._write(ws, json.dumps(payload))

    async def _write(self, ws: ClientConnection, text: str) -> None:
        """Send a frame; a socket that cannot take one within 5 s is dropped and replaced."""
        try:
            async with asyncio.timeout(5):
                await ws.send(text)
        except (ConnectionClosed, OSError):
            pass
        except TimeoutError:
            self.counters["send_timeouts"] += 1
            self._trace("send timed out: dropping the socket")
            if ws.transport is not None:
                ws.transport.abort()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the socket --

    async def _connection_loop(self) -> None:
        """Keep one socket open, reconnecting with backoff to the processes in turn."""
        server = self.index % len(self.scenario.endpoints)
        attempt = 0
        for _ in range(100_000):  # bounded: the user's own deadline ends it much sooner
            endpoint = self.scenario.endpoints[server]
            try:
                ws = await connect(
                    f"{endpoint.ws}/ws/threads/{self.thread_id}/",
                    origin=endpoint.http,
                    additional_headers={"Cookie": self.cookie},
                    open_timeout=5,
                    close_timeout=1,
                    ping_interval=None,  # our heartbeat and silence check do that job
                    compression=None,
                    proxy=None,
                    max_size=2**23,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["connect_failures"] += 1
                self._trace(f"connect to {endpoint.http} failed")
            else:
                self._trace(f"connected to {endpoint.http}")
                if await self._serve(ws):
                    attempt = 0
                self.counters["reconnects"] += 1
            # Any live process will do: alternate, with exponential backoff and jitter.
            server = (server + 1) % len(self.scenario.endpoints)
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> bool:
        """Read one socket until it closes; whether it got as far as `ready`."""
        self.ws, self.ready_seen, self.resyncing = ws, False, False
        self.last_frame_at = _now()
        heart = asyncio.create_task(self._heartbeats(ws), name=f"u{self.index}-heartbeat")
        got_ready = False
        try:
            async for raw in ws:
                self.last_frame_at = _now()
                frame = json.loads(raw)
                got_ready = got_ready or frame.get("type") == "ready"
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        except (OSError, ValueError):
            self.counters["socket_errors"] += 1
        finally:
            heart.cancel()
            self._trace(f"socket closed ({ws.close_code})")
            self.ws, self.ready_seen = None, False
            send = self.current
            if send is not None and send.outstanding_since is not None:
                send.outstanding_since = None  # resend after reconnecting, same client_id
            code = ws.close_code
            if code in (4401, 4403, 4404):
                self.counters[f"closed_{code}"] += 1
                self.scenario.detail(f"u{self.index}: socket closed with {code}")
            self.wake.set()
        return got_ready

    async def _heartbeats(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if _now() - self.last_frame_at > SILENT_SECONDS:
                self.counters["silent_sockets"] += 1
                self._trace("silent socket: dropping it")
                if ws.transport is not None:
                    ws.transport.abort()
                return
            if self.ready_seen:
                await self._write(ws, '{"command": "heartbeat"}')

    # -- frames --

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind != "token":
            self._trace(f"<- {json.dumps(frame)[:300]}")
        if "seq" in frame and isinstance(frame.get("ts"), int | float):
            self.scenario.delays.append(time.time() - frame["ts"] / 1000)
        if kind == "ready":
            self._on_ready(frame)
        elif kind == "message":
            self._on_message(frame)
        elif kind == "heartbeat":
            self._on_heartbeat(frame)
        elif kind == "error" and frame.get("message_id") is None:
            self._on_refusal(frame)
        elif kind in ("start", "token", "complete", "error"):
            self._on_reply_frame(frame)
        # `thread` (a title, a model, a branch switch) does not concern this client.

    def _is_ours(self, send: Send, message_id: str) -> bool:
        if message_id in self.previous_ids:
            return False
        if send.reply_id is not None:
            return message_id == send.reply_id
        # One thread per user, one send at a time: a reply we have not placed yet is ours.
        return send.attempts > 0

    def _on_ready(self, frame: dict[str, Any]) -> None:
        first = not self.ready_seen
        self.ready_seen = True
        self.resyncing = False
        if first:
            self.connected.set()
        send = self.current
        if send is None or not send.in_flight:
            return
        active = frame.get("active")
        if active and self._is_ours(send, str(active["message_id"])):
            send.reply_id = str(active["message_id"])
            send.outstanding_since = None
            if active["seq"] > send.last_seq:
                send.text = active.get("content") or ""
                send.last_seq = active["seq"]
                self.counters["snapshots_applied"] += 1
        elif send.attempts > 0:
            # Ours ended while we were away, or never began: the database says which.
            self._refetch_soon()
        self.wake.set()

    def _on_message(self, frame: dict[str, Any]) -> None:
        message = frame.get("message") or {}
        send = self.current
        if send is not None and message.get("client_id") == send.client_id:
            if send.user_message_id not in (None, message.get("id")):
                send.notes.append(f"two user messages: {send.user_message_id}, {message['id']}")
            send.user_message_id = message.get("id")
        else:
            self.counters["foreign_user_messages"] += 1

    def _on_refusal(self, frame: dict[str, Any]) -> None:
        code = frame.get("code", "?")
        self.counters[f"refused_{code}"] += 1
        send = self.current
        if send is None or not send.in_flight or send.reply_id is not None or not send.attempts:
            return
        if frame.get("recoverable"):
            # busy, rate_limited, interrupted (shutting down), internal: the same client_id
            # again a little later.
            send.outstanding_since = None
            send.retry_at = _now() + random.uniform(0.5, 1.0)
            if send.attempts >= MAX_SEND_ATTEMPTS:
                send.refused = f"retries exhausted (last: {code})"
        else:
            send.refused = code
        self.wake.set()

    def _on_heartbeat(self, frame: dict[str, Any]) -> None:
        quiet = self.frames_since_heartbeat == 0
        self.frames_since_heartbeat = 0
        if self.resyncing and _now() - self.resync_at > 2 * HEARTBEAT_SECONDS:
            # The `resync` got no `ready` (the server answered it with `internal` during an
            # outage): ask again. protocol.js waits for that `ready` forever, and so would
            # every frame of the reply be ignored until the socket is replaced.
            self.counters["resync_retries"] += 1
            self.resyncing = False
            self._gap()
            return
        send = self.current
        if send is None or not send.in_flight or self.resyncing or "active" not in frame:
            return  # a heartbeat without `active` says the server cannot tell right now
        active = frame.get("active")
        ours = active is not None and self._is_ours(send, str(active["message_id"]))
        if not ours and send.reply_id is None and send.user_message_id is None:
            return  # not accepted yet: the send's own retries deal with it
        if quiet and (not ours or active["seq"] > send.last_seq):
            self.counters["heartbeat_resyncs"] += 1
            self._gap()

    def _on_reply_frame(self, frame: dict[str, Any]) -> None:
        message_id, seq = str(frame.get("message_id")), frame.get("seq")
        send = self.current
        if message_id in self.previous_ids:
            self.counters["stale_frames"] += 1
            return
        if send is None or not send.in_flight:
            self.counters["stray_frames"] += 1
            return
        if send.reply_id is None:
            if send.attempts == 0:
                self.counters["stray_frames"] += 1
                return
            if frame["type"] != "start":
                self._gap()  # a reply of ours whose start we missed
                return
            send.reply_id = message_id
            send.outstanding_since = None
        elif message_id != send.reply_id:
            self.counters["foreign_reply_frames"] += 1
            if len(send.notes) < 3:
                send.notes.append(f"frames of another reply {message_id} while ours ran")
            return
        if self.resyncing or not isinstance(seq, int):
            return
        if seq <= send.last_seq:
            self.counters["duplicate_frames"] += 1
            return
        if seq > send.last_seq + 1:
            self._gap()
            return
        send.last_seq = seq
        self.frames_since_heartbeat += 1
        kind = frame["type"]
        if kind == "token":
            send.text += frame.get("token") or ""
            send.token_frames += 1
        elif kind == "complete":
            self._end(send, frame.get("status") or "complete", send.text, "frame")
        elif kind == "error":
            status = "interrupted" if frame.get("code") == "interrupted" else "error"
            self._end(send, status, send.text, "frame")
        self.scenario.progress.set()

    def _gap(self) -> None:
        if self.resyncing or self.ws is None:
            return
        self.resyncing = True
        self.resync_at = _now()
        self.counters["resyncs"] += 1
        self._spawn(self._send_json({"command": "resync"}))

    def _end(self, send: Send, status: str, text: str, by: str) -> None:
        if by == "api":
            send.shown = send.text
        send.status, send.text, send.ended_by, send.ended_at = status, text, by, _now()
        self.wake.set()
        self.scenario.progress.set()

    # -- the database's view, as the browser refetches it --

    def _refetch_soon(self) -> None:
        if self.refetching:
            self.refetch_again = True
            return
        self.refetching = True
        self._spawn(self._refetch())

    async def _refetch(self) -> None:
        try:
            for _ in range(3):
                self.refetch_again = False
                wait = self.last_refetch + REFETCH_EVERY - _now()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.last_refetch = _now()
                self.counters["refetches"] += 1
                try:
                    rows = await self.scenario.messages(self)
                except (httpx.HTTPError, ValueError, KeyError):
                    self.counters["refetch_failures"] += 1
                    continue
                self._apply_saved(rows)
                if not self.refetch_again:
                    break
        finally:
            self.refetching = False

    def _apply_saved(self, rows: list[dict[str, Any]]) -> None:
        send = self.current
        if send is None or not send.in_flight:
            return
        mine = [i for i, row in enumerate(rows) if row.get("client_id") == send.client_id]
        if not mine:
            if send.reply_id is None:
                send.outstanding_since = None  # never saved: send again, same client_id
                self.wake.set()
            return
        send.user_message_id = send.user_message_id or rows[mine[0]]["id"]
        reply = _reply_after(rows, mine[0])
        if reply is None:
            return
        if send.reply_id is None:
            send.reply_id = str(reply["id"])
            send.outstanding_since = None
        elif send.reply_id != str(reply["id"]):
            send.notes.append(f"followed reply {send.reply_id}, saved reply is {reply['id']}")
            return
        if reply.get("status") in TERMINAL:
            self.counters["ended_by_api"] += 1
            self._end(send, reply["status"], reply.get("content") or "", "api")
        self.wake.set()


def _reply_after(rows: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    """The first assistant row after the user row at `index`, before the next user row."""
    for row in rows[index + 1 :]:
        if row.get("role") == "user":
            return None
        if row.get("role") == "assistant":
            return row
    return None


def _now() -> float:
    return asyncio.get_running_loop().time()


# --- the deployment and the scenario --------------------------------------------------------


class Backing:
    """A private PostgreSQL and Redis that scenarios take turns on (the fault tests' module):
    initdb, the migrations and the users happen once, and each scenario gets a fresh copy of
    the database (CREATE DATABASE ... TEMPLATE) and an emptied Redis. A fault still restarts
    these private servers, never the machine's shared ones."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pg: PostgresInstance | None = None
        self.redis: RedisInstance | None = None
        self._templates: dict[int, str] = {}  # users -> template database name

    def start(self) -> Backing:
        """Start both servers (blocking)."""
        self.pg = PostgresInstance().start()
        self.redis = RedisInstance().start()
        return self

    def stop(self) -> None:
        """Stop both and delete PostgreSQL's files; never raises."""
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.pg is not None:
            self.pg.remove()

    def up(self) -> None:
        """Both servers running again, whatever the last scenario left (a failed restart)."""
        assert self.pg is not None and self.redis is not None
        if not _listening(self.pg.port):
            self.pg.start()
        if not _listening(self.redis.port):
            self.redis.start()

    def database(self, env: dict[str, str], users: int) -> str:
        """A fresh database holding the migrations and `users` chaos users: its URL. Redis
        is emptied too: user ids start again with each database, and Redis keys name them."""
        assert self.pg is not None and self.redis is not None
        self.up()
        if users not in self._templates:
            url, _ = new_database(self.pg.url)
            prepare_database({**env, "DATABASE_URL": url}, users)
            self._templates[users] = url.rsplit("/", 1)[1]
        name = f"chaos_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._templates[users]}"')
        with redis.Redis.from_url(self.redis.url) as client:
            client.flushall()
        return self.pg.url.rsplit("/", 1)[0] + "/" + name


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def prepare_database(env: dict[str, str], users: int) -> None:
    """Migrate the database of `env` and create the chaos users in it."""
    manage(env, "migrate", "--noinput", "-v", "0")
    # One shell for every user, with one password hash: create_user per user would hash
    # the same password 100 times.
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.hashers import make_password\n"
        "from django.contrib.auth.models import User\n"
        f"h = make_password({PASSWORD!r})\n"
        "User.objects.bulk_create("
        f"[User(username=f'chaos{{i}}', password=h) for i in range({users})])\n",
    )


class Deployment:
    """Private PostgreSQL, Redis, stub provider process and two daphne processes; the first
    two are a `Backing`'s when one is given (kept running after), else this run's own."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None,
        users: int,
        log: Log,
        backing: Backing | None = None,
    ) -> None:
        self.workdir, self.overrides, self.users, self.log = workdir, env or {}, users, log
        self.backing = backing
        self.pg: PostgresInstance | None = None
        self.redis: RedisInstance | None = None
        self.stub: subprocess.Popen | None = None
        self.stub_url = ""
        self.daphnes: list[Daphne] = []
        self.env: dict[str, str] = {}

    def start(self) -> None:
        """Start everything, migrate, create the users (blocking: run it in a thread)."""
        self.log(f"chaos: workdir {self.workdir}")
        if self.backing is None:
            self.pg = PostgresInstance().start()
            self.redis = RedisInstance().start()
        else:
            self.pg, self.redis = self.backing.pg, self.backing.redis
        self._start_stub()
        self.env = server_env(
            AGENT_PROVIDER="compatible",
            AGENT_MODEL=STUB_MODEL,
            OPENAI_BASE_URL=self.stub_url,
            OPENAI_API_KEY=STUB_KEY,
            OPENAI_AGENTS_DISABLE_TRACING="1",
            CHAT_VAR_DIR=str(self.workdir),
            REDIS_URL=self.redis.url,
            OWNER_TTL_SECONDS=str(OWNER_TTL_SECONDS),
            CHECKPOINT_SECONDS="2",
            **NO_USER_LIMITS,
            SECRET_KEY=secrets.token_urlsafe(48),
            LOG_LEVEL="info",
            **self.overrides,
        )
        if self.backing is None:
            database_url, _ = new_database(self.pg.url)
            prepare_database({**self.env, "DATABASE_URL": database_url}, self.users)
        else:
            database_url = self.backing.database(self.env, self.users)
        # The private cluster runs with synchronous_commit=off, so its immediate stop (our
        # "crash") may forget commits it already acknowledged: a harness artefact that would
        # show up as replies lost by the product. Commits are durable in this database.
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        self.env["DATABASE_URL"] = database_url
        self.daphnes = [Daphne(self.env), Daphne(self.env)]
        # Side by side: a start is mostly imports, each on its own core.
        with concurrent.futures.ThreadPoolExecutor(len(self.daphnes)) as pool:
            list(pool.map(start_daphne, self.daphnes))
        self.log(f"chaos: daphne on {[d.port for d in self.daphnes]}, logs in {self.workdir}")

    def _start_stub(self) -> None:
        out = self.workdir / "stub.log"
        with out.open("wb") as sink:
            self.stub = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scripts.stub_provider",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--api-key",
                    STUB_KEY,
                ],
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = re.search(r"STUB_URL=(\S+)", out.read_text(errors="replace"))
            if found:
                self.stub_url = found.group(1)
                return
            if self.stub.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the stub provider did not start: {out.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop everything that was started; never raises."""
        # Both at once: each may take its drain time to exit.
        running = [d for d in self.daphnes if d.process is not None and d.process.poll() is None]
        for daphne in running:
            with contextlib.suppress(Exception):
                daphne.process.send_signal(signal.SIGTERM)
        for daphne in running:
            with contextlib.suppress(Exception):
                daphne.process.wait(5)
            with contextlib.suppress(Exception):
                daphne.kill()
        if self.stub is not None and self.stub.poll() is None:
            self.stub.terminate()
            try:
                self.stub.wait(5)
            except subprocess.TimeoutExpired:
                self.stub.kill()
                self.stub.wait(5)
        if self.backing is not None:
            return  # the backing's servers stay up for the next scenario
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.pg is not None:
            self.pg.remove()


def start_daphne(daphne: Daphne, tries: int = 3) -> Daphne:
    """Start (or start again, on the same port) a daphne process, retrying a failed start."""
    for attempt in range(tries):
        try:
            return daphne.start()
        except RuntimeError:
            daphne.kill()
            if attempt == tries - 1:
                raise
            time.sleep(3)
    return daphne


def term(daphne: Daphne, timeout: float) -> bool:
    """SIGTERM, then wait up to `timeout` for the process to exit by itself; whether it did."""
    process = daphne.process
    if process is None or process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


class Scenario:
    """One run: the deployment, the users, the fault and the verification."""

    def __init__(
        self,
        fault: str,
        *,
        users: int,
        replies: int,
        tokens: int,
        delay_ms: float,
        down_seconds: float,
        env: dict[str, str] | None,
        deadline_seconds: float,
        workdir: Path,
        log: Log,
        backing: Backing | None = None,
    ) -> None:
        self.fault, self.users_n, self.replies = fault, users, replies
        self.tokens, self.delay_ms, self.down_seconds = tokens, delay_ms, down_seconds
        self.deadline_seconds, self.log = deadline_seconds, log
        self.deployment = Deployment(workdir, env, users, log, backing)
        self.endpoints: list[Endpoint] = []
        self.users: list[UserClient] = []
        self.http: httpx.AsyncClient | None = None
        self.tally = Tally(fault=fault, users=users, replies=replies, workdir=str(workdir))
        self.progress = asyncio.Event()
        self.delays: list[float] = []
        self.loop_lags: list[float] = []
        self.users_done = False
        self.go_at: float | None = None
        self.fault_start: float | None = None
        self.fault_end: float | None = None
        self.round_fault = min(FAULT_ROUND, replies - 1)
        self.env_overrides = env or {}

    def detail(self, line: str) -> None:
        """Keep a failure line (bounded)."""
        if len(self.tally.details) < MAX_DETAILS:
            self.tally.details.append(line)
        else:
            self.tally.counters["details_left_off"] += 1

    def note(self, line: str) -> None:
        """Say what the runner did (not a failure)."""
        self.tally.notes.append(line)
        self.log(f"chaos[{self.fault}]: {line}")

    # -- set-up --

    async def setup(self) -> None:
        """The deployment, every user's login and thread, and every reply's script."""
        await asyncio.to_thread(self.deployment.start)
        self.endpoints = [Endpoint(http=d.url, ws=d.ws_url) for d in self.deployment.daphnes]
        self.http = httpx.AsyncClient(
            timeout=15, trust_env=False, limits=httpx.Limits(max_connections=40)
        )
        started = time.monotonic()
        # Logging in hashes a password on the server (PBKDF2, ~0.3 s of CPU): a few at a time.
        gate = asyncio.Semaphore(6)

        async def make_user(index: int) -> UserClient:
            async with gate:
                endpoint = self.endpoints[index % len(self.endpoints)]
                cookie, thread_id = await _login(endpoint.http, f"chaos{index}", PASSWORD)
            return UserClient(self, index, cookie, thread_id)

        self.users = list(await asyncio.gather(*(make_user(i) for i in range(self.users_n))))
        self.log(
            f"chaos[{self.fault}]: {self.users_n} users logged in"
            f" in {time.monotonic() - started:.1f} s"
        )
        root = self.deployment.stub_url.removesuffix("/v1")
        for user in self.users:
            for k in range(self.replies):
                tag = f"u{user.index}-r{k}-{secrets.token_hex(4)}"
                pieces = [f" {tag}:{i}" for i in range(self.tokens)]
                user.sends.append(
                    Send(user.index, k, tag, str(uuid.uuid4()), expected="".join(pieces))
                )
        gate = asyncio.Semaphore(20)

        async def script(send: Send) -> None:
            first = FIRST_TOKEN_DELAY_MS if self._first_token_round(send.round) else 0
            body = {
                "match": send.tag,
                "tokens": [f" {send.tag}:{i}" for i in range(self.tokens)],
                "delay_ms": self.delay_ms,
                "first_token_delay_ms": first,
            }
            async with gate:
                answer = await self.http.post(
                    f"{root}/_stub/scripts",
                    json=body,
                    headers={"Authorization": f"Bearer {STUB_KEY}"},
                )
                answer.raise_for_status()

        await asyncio.gather(*(script(s) for u in self.users for s in u.sends))

    def _first_token_round(self, round_: int) -> bool:
        return self.fault == "redis-restart-first-token" and round_ == self.round_fault

    # -- the run --

    async def run(self) -> None:
        """Every user, the fault trigger, then the verification."""
        go = asyncio.Event()
        lives = [asyncio.create_task(u.live(go), name=f"user-{u.index}") for u in self.users]
        await asyncio.sleep(0)
        connected = await _wait_for(lambda: all(u.connected.is_set() for u in self.users), 60)
        if not connected:
            missing = sum(not u.connected.is_set() for u in self.users)
            self.note(f"{missing} users had no socket after 60 s; starting anyway")
        self.go_at = _now()
        go.set()
        fault = asyncio.create_task(self._fault(), name="fault")
        reporter = asyncio.create_task(self._report(), name="report")
        lag = asyncio.create_task(self._watch_loop(), name="loop-lag")
        bound = self.replies * (self.deadline_seconds + 10) + 60
        try:
            done, pending = await asyncio.wait(lives, timeout=bound)
            if pending:
                self.note(f"{len(pending)} users still running after {bound:.0f} s: cancelled")
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=10)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    self.detail(f"a user task failed: {exc!r}")
            self.tally.load_seconds = _now() - self.go_at
        finally:
            self.users_done = True
            for task in lives:
                task.cancel()  # only matters when the run itself failed or was cancelled
            reporter.cancel()
            lag.cancel()
            if self.loop_lags:
                lags = sorted(self.loop_lags)
                self.tally.notes.append(
                    f"the runner's own event loop ran late by {_quantile(lags, 0.99):.2f} s"
                    f" (p99), {lags[-1]:.2f} s (max): frame delays beyond that are the server's"
                )
            # The fault's thread cannot be cancelled; it is bounded (restarts, SIGTERM wait).
            await asyncio.wait([fault], timeout=120)
            if not fault.done():
                self.note("the fault injection was still running 120 s after the users ended")
            elif not fault.cancelled() and fault.exception() is not None:
                self.detail(f"the fault injection failed: {fault.exception()!r}")
        await self.verify()

    async def _watch_loop(self) -> None:
        """How late this process's own loop wakes up: the clients' share of any delay."""
        while True:
            before = _now()
            await asyncio.sleep(0.1)
            self.loop_lags.append(max(0.0, _now() - before - 0.1))

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(10)
            sends = [s for u in self.users for s in u.sends]
            ended = sum(s.status is not None for s in sends)
            flying = sum(s.in_flight for s in sends)
            stuck = sum(s.stuck for s in sends)
            reconnects = sum(u.counters["reconnects"] for u in self.users)
            self.log(
                f"chaos[{self.fault}]: t={_now() - self.go_at:.0f}s ended {ended}/{len(sends)}"
                f" in flight {flying} stuck {stuck} reconnects {reconnects}"
            )

    async def _fault(self) -> None:
        """Wait for the moment, then inject the fault in a thread (clients keep running)."""
        if self.fault == NO_FAULT:
            return
        # Progress is the script's tokens shown, not frames: under load the server coalesces
        # a backlog into few frames, and clients catch up through `ready` snapshots.
        sends = [u.sends[self.round_fault] for u in self.users]
        if self.fault in ("sigkill", "sigterm"):
            # Only process 0's replies are hit: wait for them, not for process 1's, which
            # may stream ahead and meet the condition alone.
            sends = [u.sends[self.round_fault] for u in self.users if u.index % 2 == 0]
        need = max(1, math.ceil(len(sends) / 2))
        first_token = self.fault == "redis-restart-first-token"
        reason = ""
        for _ in range(100_000):
            if first_token:
                waiting = sum(s.reply_id is not None and s.in_flight for s in sends)
                tokens = sum(s.shown_tokens > 0 for s in sends)
                if waiting >= need and tokens == 0:
                    break
                if tokens > 0:
                    reason = f"a first token came before {need} replies began ({waiting})"
                    break
            else:
                streaming = sum(
                    s.shown_tokens >= STREAM_TRIGGER_TOKENS and s.in_flight for s in sends
                )
                if streaming >= need:
                    break
            if all(s.sent_at is not None and not s.in_flight for s in sends):
                reason = "the fault round ended before the trigger"
                break
            if _now() - self.go_at > 60:
                reason = "no trigger within 60 s"
                break
            if self.users_done:
                self.note(f"{self.fault} not injected: every user ended before the trigger")
                return
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self.progress.wait()
        in_flight = sum(s.in_flight for s in sends)
        streaming = sum(s.shown_tokens >= STREAM_TRIGGER_TOKENS and s.in_flight for s in sends)
        whose = "process 0's " if len(sends) < len(self.users) else ""
        self.fault_start = _now()
        self.tally.fault_at = self.fault_start - self.go_at
        self.note(
            f"injecting {self.fault} at t={self.tally.fault_at:.1f}s: {in_flight} of {whose}"
            f"{len(sends)} replies of round {self.round_fault} in flight, {streaming} of them"
            f" showing {STREAM_TRIGGER_TOKENS}+ tokens"
            + (f" (fallback: {reason})" if reason else "")
        )
        try:
            await asyncio.to_thread(self._inject)
        finally:
            self.fault_end = _now()
            self.tally.fault_seconds = self.fault_end - self.fault_start
            self.note(f"{self.fault} done after {self.tally.fault_seconds:.1f} s")

    def _inject(self) -> None:
        """The fault itself (blocking)."""
        deployment = self.deployment
        if self.fault == "pg-restart":
            deployment.pg.restart(self.down_seconds)
        elif self.fault in ("redis-restart", "redis-restart-first-token"):
            deployment.redis.restart(self.down_seconds)
        elif self.fault == "sigkill":
            victim = deployment.daphnes[0]
            victim.kill()
            # Long enough for its replies' owner records to expire, then back for later rounds.
            time.sleep(OWNER_TTL_SECONDS + 2)
            start_daphne(victim)
        elif self.fault == "sigterm":
            victim = deployment.daphnes[0]
            limit = float(self.env_overrides.get("DRAIN_SECONDS", "30")) + 30
            began = time.monotonic()
            exited = term(victim, limit)
            took = time.monotonic() - began
            if exited:
                code = victim.process.returncode if victim.process else None
                self.tally.notes.append(f"process 0 exited {took:.1f} s after SIGTERM ({code})")
            else:
                self.detail(f"process 0 still running {limit:.0f} s after SIGTERM: SIGKILL")
                victim.kill()
            start_daphne(victim)
        else:
            raise ValueError(f"unknown fault {self.fault!r}")

    # -- verification --

    async def messages(self, user: UserClient) -> list[dict[str, Any]]:
        """Every message of the user's thread, oldest first, from any live process."""
        assert self.http is not None
        order = self.endpoints[user.index % 2 :] + self.endpoints[: user.index % 2]
        failure: Exception | None = None
        for endpoint in order:
            url: str | None = f"{endpoint.http}/api/threads/{user.thread_id}/messages/"
            rows: list[dict[str, Any]] = []
            try:
                for _ in range(50):
                    answer = await self.http.get(url, headers={"Cookie": user.cookie})
                    answer.raise_for_status()
                    page = answer.json()
                    rows = page["results"] + rows
                    url = page.get("previous")
                    if not url:
                        return rows
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                failure = exc
        raise failure or RuntimeError("no page")

    async def _all_messages(self) -> dict[int, list[dict[str, Any]]]:
        gate = asyncio.Semaphore(10)

        async def one(user: UserClient) -> tuple[int, list[dict[str, Any]]]:
            async with gate:
                for attempt in range(5):
                    try:
                        return user.index, await self.messages(user)
                    except (httpx.HTTPError, ValueError, KeyError, RuntimeError):
                        await asyncio.sleep(1 + attempt)
                return user.index, await self.messages(user)

        return dict(await asyncio.gather(*(one(u) for u in self.users)))

    async def verify(self) -> None:
        """Settle (bounded), read every thread and classify every send."""
        saved = await self._all_messages()
        started = _now()
        while _now() - started < SETTLE_SECONDS:
            unsettled = [u for u in self.users if any(_open(row) for row in saved.get(u.index, []))]
            if not unsettled:
                break
            await asyncio.sleep(1)
            for user in unsettled:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, RuntimeError):
                    saved[user.index] = await self.messages(user)
        for user in self.users:
            self._classify_user(user, saved.get(user.index, []))
        await asyncio.to_thread(self._write_debug, saved)
        self._timings()
        for user in self.users:
            self.tally.counters.update(user.counters)

    def _write_debug(self, saved: dict[int, list[dict[str, Any]]]) -> None:
        """Every send's client state; trace and saved rows of (up to 20) failed users."""
        workdir = self.deployment.workdir
        with (workdir / "sends.jsonl").open("w") as out:
            for user in self.users:
                for send in user.sends:
                    state = {k: v for k, v in vars(send).items() if k not in ("expected",)}
                    state["thread_id"] = user.thread_id
                    out.write(json.dumps(state) + "\n")
        for user in [u for u in self.users if u.failed][:MAX_DETAILS]:
            lines = [f"thread {user.thread_id}", *user.trace, "saved rows:"]
            lines += [json.dumps(row)[:400] for row in saved.get(user.index, [])]
            (workdir / f"trace-u{user.index}.txt").write_text("\n".join(lines) + "\n")

    def _classify_user(self, user: UserClient, rows: list[dict[str, Any]]) -> None:
        tally = self.tally
        by_client: dict[str, list[int]] = collections.defaultdict(list)
        for i, row in enumerate(rows):
            if row.get("role") == "user" and row.get("client_id"):
                by_client[row["client_id"]].append(i)
        known = {s.client_id for s in user.sends}
        for client_id in set(by_client) - known:
            self.detail(f"u{user.index}: a user message nobody sent ({client_id})")
        for send in user.sends:
            verdict, why = self._classify(send, rows, by_client.get(send.client_id, []))
            setattr(tally, verdict, getattr(tally, verdict) + 1)
            if verdict != "complete" and verdict != "other_terminal":
                user.failed = True
                note = f" [{'; '.join(send.notes)}]" if send.notes else ""
                self.detail(f"{send.tag}: {verdict}: {why}{note}")

    def _classify(self, send: Send, rows: list[dict[str, Any]], mine: list[int]) -> tuple[str, str]:
        tally = self.tally
        shown = f"client {send.status or 'not ended'} {len(send.text)} chars"
        if not mine:
            tally.statuses["(not saved)"] += 1
            if send.refused:
                tally.lost_refused += 1
                return "lost", f"refused for good: {send.refused} after {send.attempts} tries"
            if send.stuck:
                return (
                    "stuck",
                    f"never accepted in {self.deadline_seconds:g} s ({send.attempts} tries,"
                    f" client placed reply {send.reply_id})",
                )
            if send.user_message_id:
                tally.lost_unanswered += 1
                return "lost", "the server announced the user message, which is not saved"
            return "stuck", "never accepted"
        tally.started += 1
        assistants = [
            row
            for i in mine
            for row in _rows_until_next_user(rows, i)
            if row.get("role") == "assistant"
        ]
        if len(mine) > 1:
            return "duplicated", f"{len(mine)} user rows for one client_id"
        if len(assistants) > 1:
            return "duplicated", f"{len(assistants)} assistant replies for one send"
        reply = _reply_after(rows, mine[0])
        if reply is None:
            tally.statuses["(no reply row)"] += 1
            tally.lost_unanswered += 1
            return "lost", f"accepted but no assistant row; {shown}"
        status, content = reply.get("status"), reply.get("content") or ""
        tally.statuses[status] += 1
        saved = f"saved {status} {len(content)} chars"
        expected = send.expected
        problem = _text_problem(send.text, send.tag, expected) or _text_problem(
            content, send.tag, expected
        )
        if problem and problem[0] == "duplicated":
            return "duplicated", f"{problem[1]}; {shown}, {saved}"
        if send.stuck or send.status is None:
            return "stuck", f"no end seen by the client in {self.deadline_seconds:g} s; {saved}"
        if status not in TERMINAL:
            return "stuck", f"saved row still {status} after settling; {shown}"
        if send.reply_id is not None and send.reply_id != str(reply["id"]):
            return "corrupted", f"the client followed {send.reply_id}, saved reply {reply['id']}"
        if problem:
            return "corrupted", f"{problem[1]}; {shown}, {saved}"
        if content != send.text:
            return "corrupted", f"saved text != shown text; {shown}, {saved}"
        if not content.startswith(send.shown):
            # The refetch replaced the live text by a shorter saved one: the user saw text
            # vanish (a checkpoint older than the frames already delivered).
            lost = len(send.shown) - len(content)
            return "corrupted", f"saved {status} text is {lost} chars short of the text shown live"
        if send.status != status:
            return (
                "corrupted",
                f"status shown {send.status} != saved {status}; {len(content)} chars",
            )
        if status == "complete":
            if content != expected:
                return "corrupted", f"complete but {len(content)} of {len(expected)} chars"
            return "complete", ""
        return "other_terminal", ""

    def _timings(self) -> None:
        sends = [s for u in self.users for s in u.sends if s.sent_at is not None]
        if self.fault_start is not None and self.fault_end is not None:
            overlapped = [
                s
                for s in sends
                if s.sent_at <= self.fault_end
                and (s.ended_at is None or s.ended_at >= self.fault_start)
            ]
            after = [
                s.ended_at - self.fault_start
                for s in sends
                if s.status == "complete"
                and s.ended_at is not None
                and s.ended_at >= self.fault_start
            ]
            self.tally.first_complete_after_fault = min(after) if after else None
        else:
            overlapped = sends
        durations = sorted(s.ended_at - s.sent_at for s in overlapped if s.ended_at is not None)
        self.tally.p50 = _quantile(durations, 0.5)
        self.tally.p99 = _quantile(durations, 0.99)
        delays = sorted(self.delays)
        self.tally.frame_delay_p50 = _quantile(delays, 0.5)
        self.tally.frame_delay_p99 = _quantile(delays, 0.99)
        self.tally.frame_delay_max = delays[-1] if delays else None

    async def close(self) -> None:
        """Tear everything down; never raises."""
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.aclose()
        await asyncio.to_thread(self.deployment.stop)


def _rows_until_next_user(rows: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    out = []
    for row in rows[index + 1 :]:
        if row.get("role") == "user":
            break
        out.append(row)
    return out


def _open(row: dict[str, Any]) -> bool:
    return row.get("role") == "assistant" and row.get("status") not in TERMINAL


def _text_problem(text: str, tag: str, expected: str) -> tuple[str, str] | None:
    """None if `text` is a prefix of the expected text, else (verdict, why)."""
    if expected.startswith(text):
        return None
    pieces = text.split(" ")[1:] if text.startswith(" ") else text.split(" ")
    seen: set[str] = set()
    for piece in pieces:
        if piece in seen and piece.startswith(f"{tag}:"):
            return "duplicated", f"text repeats {piece!r}"
        seen.add(piece)
    if len(text) > len(expected):
        return "duplicated", f"text longer than expected ({len(text)} > {len(expected)})"
    at = next((i for i, (a, b) in enumerate(zip(text, expected, strict=False)) if a != b), 0)
    return "corrupted", f"text differs from the script at char {at}: {text[at : at + 24]!r}"


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


async def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def _login(base_url: str, username: str, password: str) -> tuple[str, str]:
    """Log in through the form and create the user's thread: (Cookie header, thread id)."""
    failure: Exception | None = None
    for attempt in range(3):
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as client:
                page = await client.get("/accounts/login/")
                token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
                if token is None:
                    raise RuntimeError(f"no login form at {base_url}")
                answer = await client.post(
                    "/accounts/login/",
                    data={
                        "username": username,
                        "password": password,
                        "csrfmiddlewaretoken": token.group(1),
                    },
                )
                if answer.status_code != 302:
                    raise RuntimeError(f"login of {username} answered {answer.status_code}")
                made = await client.post(
                    "/api/threads/",
                    json={},
                    headers={"X-CSRFToken": client.cookies["csrftoken"], "Referer": base_url + "/"},
                )
                made.raise_for_status()
                cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
                return cookie, str(made.json()["id"])
        except (httpx.HTTPError, RuntimeError, KeyError) as exc:
            failure = exc
            await asyncio.sleep(1 + attempt)
    raise RuntimeError(f"could not log in {username}: {failure!r}")


async def run_scenario(
    fault: str,
    *,
    users: int,
    replies: int,
    tokens: int = 60,
    delay_ms: float = 40,
    down_seconds: float = 3.0,
    env: dict[str, str] | None = None,
    deadline_seconds: float = 90,
    workdir: Path | None = None,
    log: Log = print,
    backing: Backing | None = None,
) -> Tally:
    """Start a private deployment (own PostgreSQL, Redis, stub process, two daphne processes;
    the PostgreSQL and Redis of `backing` if given), run the users, inject the fault, verify,
    tear everything down (also on failure, the backing aside), return the tally."""
    if fault not in (*FAULTS, NO_FAULT):
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join((*FAULTS, NO_FAULT))}")
    if users < 1 or replies < 1 or tokens < 1:
        raise ValueError("users, replies and tokens must be at least 1")
    made = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"chaos-{fault}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    scenario = Scenario(
        fault,
        users=users,
        replies=replies,
        tokens=tokens,
        delay_ms=delay_ms,
        down_seconds=down_seconds,
        env=env,
        deadline_seconds=deadline_seconds,
        workdir=workdir,
        log=log,
        backing=backing,
    )
    clean = False
    try:
        await scenario.setup()
        await scenario.run()
        clean = scenario.tally.ok()
    finally:
        await scenario.close()
        scenario.tally.seconds = time.monotonic() - began
        (workdir / "tally.json").write_text(json.dumps(_as_json(scenario.tally), indent=2))
        if clean and made:
            shutil.rmtree(workdir, ignore_errors=True)
            scenario.tally.workdir = ""
        else:
            log(f"chaos[{fault}]: logs and tally kept in {workdir}")
    return scenario.tally


def _as_json(tally: Tally) -> dict[str, Any]:
    data = dict(vars(tally))
    data["statuses"] = dict(tally.statuses)
    data["counters"] = dict(tally.counters)
    return data


__all__ = ["FAULTS", "NO_FAULT", "Backing", "Tally", "run_scenario", "term"]
