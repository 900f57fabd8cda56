"""Streaming at scale: the product next to the seed's relay, same stub, same sitting.

    .venv/bin/python -m bench.scale                     # every scenario and load, 5 runs each
    .venv/bin/python -m bench.scale --runs 1 --loads 20x100 --scenarios seed,memory
    .venv/bin/python -m bench.scale --loads 80x50 --runs 1 --no-capacity --idle-sockets 0
    .venv/bin/python -m bench.scale --loads 80x50 --runs 3 --no-capacity --idle-sockets 0 \
        --scenarios seed,memory,sse,chatkit,seed-tools,tools

Scenarios, each served by fresh processes for every run:

- ``seed``: the seed's relay (bench/seed_relay.py: FastAPI, uvicorn with one worker, the Agents
  SDK, one SSE event per token). Its clients POST ``/api/stream/message`` and read the SSE.
- ``memory``: one daphne process, SQLite, the in-process channel layer.
- ``redis``: one daphne process, PostgreSQL, Redis.
- ``redis2``: two daphne processes behind `make cluster`'s round-robin balancer, PostgreSQL,
  Redis. Each reply is also watched by a second socket that the balancer put on the *other*
  process.

Side scenarios, run only at the ``--side-loads`` (80x50 by default: the default sitting grows
by one load of each, not four):

- ``sse`` and ``chatkit``: one daphne process, SQLite, as ``memory``, each reply asked over
  HTTP: ``POST /api/stream/message`` read as the product's SSE frames, and ``POST /api/chatkit``
  with a ChatKit ``threads.create`` read as ChatKit events (bench/http_paths.py, shared with
  bench/chatkit.py). Compared with each other, run by run.
- ``seed-tools`` and ``tools``: the stub answers each reply's first two turns with a
  ``calculate`` tool call, then the text; ``tools`` is the product over WebSockets as
  ``memory``, ``seed-tools`` the seed relay whose agent has the same tool (the Agents SDK
  alone). What the two turns add (``tools`` - ``memory`` beside ``seed-tools`` - ``seed``,
  run by run) is the comparison; the stub's arrival of every turn times the turns apart.

PostgreSQL and Redis are private instances (scripts/instances.py) started for the sitting, so
their CPU is ours alone. A load ``SxR`` is S replies started at once, the stub streaming each at
R tokens/s: 200 tokens of 7 characters (one frame per token at BUFFER_SIZE=5, as the relay
sends one event per token), each carrying its emission time and index (scripts/stub_provider.py).
Each load runs ``--runs`` times, the scenarios alternating (their order reversed every other
run); each figure is reported as the median and the worst of the runs, and as a ratio to the
seed relay's median at that load. Then a ramp measures each scenario's capacity (tokens/s with
p99 under 100 ms) and one daphne process carries 5,000 idle sockets. docs/performance.md
explains every figure. The table is printed and everything is written to
``var/bench-scale.json``. Exit status 1 when a reply failed a check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.http_paths import PATHS, Event, HttpPath
from bench.stack import (
    BENCH_PASSWORD,
    BENCH_USER,
    ROOT,
    STUB_API_KEY,
    BalancerProcess,
    ProductStack,
    RelayProcess,
    StubProcess,
    cpu_seconds,
    machine_info,
    memory_mb,
    postgres_cpu_seconds,
    redis_cpu_seconds,
    wait_idle,
)
from scripts.instances import PostgresInstance, RedisInstance
from scripts.processes import Daphne, cookie_header, login, manage
from scripts.stub_provider import (
    lorem_tokens,
    timestamp_tokens_indexes,
    timestamp_tokens_times_ns,
)

MAIN_SCENARIOS = ("seed", "memory", "redis", "redis2")
# Run only at the --side-loads: ChatKit beside SSE, and a reply with two rounds of tool calls
# in the product beside the Agents SDK alone doing the same.
SIDE_SCENARIOS = ("sse", "chatkit", "seed-tools", "tools")
SCENARIOS = MAIN_SCENARIOS + SIDE_SCENARIOS
RELAYS = ("seed", "seed-tools")  # bench/seed_relay.py; every other scenario is the product
REDIS_SCENARIOS = ("redis", "redis2")
DEFAULT_LOADS = "20x100,80x50,120x50,200x50"
DEFAULT_SIDE_LOADS = "80x50"
TOKENS = 200
TOKEN_CHARS = 7
# The comparison's rules: the product at its defaults, whatever this shell's environment says.
PRODUCT_DEFAULTS = {"BUFFER_SIZE": "5", "FLUSH_INTERVAL_MS": "30", "CHECKPOINT_SECONDS": "2"}
OUTPUT = ROOT / "var" / "bench-scale.json"
PROMPT = "Benchmark [{tag}]: please stream your answer."
TAG = re.compile(r"Benchmark \[([\w-]+)\]")
# Each target's first reply (per process) loads the agent, the SDKs and the database code: a
# short scripted one, not measured.
WARM_UP = "Warm-up, not measured."
WARM_UP_TOKENS = 5
# Handshakes this many at a time: a burst of hundreds measures the accept queue instead.
CONNECT_CONCURRENCY = 32
IDLE_TIMEOUT = 30.0  # a reply silent this long has stalled
LATENCY_BOUND_MS = 100.0  # capacity: the highest rate whose p99 stays under this
CHECKPOINT_SAMPLE_SECONDS = 0.5
CHECKPOINT_SAMPLE_REPLIES = 64  # rows read per sample, at most: the reading costs too
RAMP_START, RAMP_FACTOR, RAMP_MAX_STREAMS = 10, 1.25, 400
IDLE_RATE = 100  # tokens/s of the reply measured beside the idle sockets
IDLE_REPLIES = 3  # replies measured on one thread, without and then with the idle sockets
IDLE_BATCH = 250
THREADS_IN_BULK = 2000
# The tool scenarios: the stub answers each reply's first two turns with one `calculate` call
# each (a tool the product has, chat/tools.py, run in its child process), then the text. The
# model-made title's request (its prompt starts as chat/agent.py's TITLE_PROMPT) would match
# the same script: it keeps the default reply, as in the other scenarios.
TOOL = "chat.tools.calculate"
TOOL_SCENARIOS = ("seed-tools", "tools")
TOOL_ROUNDS = (("6*7", "6*7 = 42"), ("2**10", "2**10 = 1024"))  # expression, the answer
TITLE_PROMPT_START = "Write a short title"
WARM_UP_SCRIPT = {"match": WARM_UP, "tokens": ["x"] * WARM_UP_TOKENS}
TOOL_SCRIPTS = (
    {**WARM_UP_SCRIPT, "tool_calls": [[{"name": "calculate", "arguments": {"expression": "1+1"}}]]},
    {
        "match": "Benchmark [",
        "tool_calls": [
            [{"name": "calculate", "arguments": {"expression": expression}}]
            for expression, _ in TOOL_ROUNDS
        ],
        "tokens": ["x"] * TOKENS,  # each sent as a timestamp token
    },
    {"match": TITLE_PROMPT_START, "tokens": lorem_tokens(TOKENS)},
)
START_RETRIES = 3  # a product file mid-edit can stop daphne from starting: wait and retry

# Figures where a bigger value is the better one: their worst run is the smallest.
HIGHER_IS_BETTER = {"tokens_per_s", "provider_tokens_per_s"}
# Figures given as a ratio to the seed relay's median.
RATIO_FIGURES = (
    "latency_p50_ms",
    "latency_p99_ms",
    "ttft_added_p50_ms",
    "ttft_added_p99_ms",
    "cpu_server_ms_per_1k",
    "tokens_per_s",
)


@dataclass(frozen=True)
class Load:
    """S replies at once, streamed by the stub at R tokens/s each."""

    streams: int
    rate: float

    @property
    def name(self) -> str:
        """``SxR``, as on the command line."""
        return f"{self.streams}x{self.rate:g}"

    @classmethod
    def parse(cls, text: str) -> Load:
        """``"80x50"`` -> ``Load(80, 50.0)``."""
        streams, _, rate = text.strip().partition("x")
        return cls(int(streams), float(rate))


@dataclass
class Reply:
    """What one client saw of one reply (the client that asked, or a watcher)."""

    tag: str
    sent_ns: int = 0
    text: str = ""  # the reply as this client has it, resyncs included
    token_times: list[int] = field(default_factory=list)  # when the client had token k
    framed: list[bool] = field(default_factory=list)  # token k came in a frame, not a resync
    frames: int = 0  # frames (SSE events) that carried text
    resyncs: int = 0
    fetched: bool = False  # the reply's end was read from the API after a resync
    message_id: str = ""
    status: str = ""
    done: bool = False
    finished_ns: int = 0
    error: str = ""

    def add(self, text: str, now_ns: int, framed: bool = True) -> None:
        """The client now has ``text`` more (or, not framed, ``text`` as the whole reply)."""
        if framed:
            self.text += text
            self.frames += 1
        else:
            self.text = text
        whole = len(self.text) // TOKEN_CHARS
        if whole > len(self.token_times):
            grown = whole - len(self.token_times)
            self.token_times.extend([now_ns] * grown)
            self.framed.extend([framed] * grown)


@dataclass
class Measured:
    """One measured batch of replies, and what every process spent meanwhile."""

    replies: list[Reply]
    watchers: list[Reply]
    duration_s: float
    cpu_s: dict[str, float]
    arrivals: Arrivals  # when the stub got each reply's requests
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # message id -> status, text
    lag_samples_ms: list[float] = field(default_factory=list)
    rss_peak_mb: float | None = None


class Meter:
    """CPU seconds each reader's process spent between ``begin()`` and ``end()``."""

    def __init__(self, readers: dict[str, Callable[[], float]]) -> None:
        self.readers = readers
        self._start: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def begin(self) -> None:
        """Take the starting figures."""
        self._start = {name: read() for name, read in self.readers.items()}

    def end(self) -> None:
        """Take the final figures; ``spent`` holds the differences."""
        self.spent = {
            name: round(read() - self._start[name], 3) for name, read in self.readers.items()
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout: nothing for {IDLE_TIMEOUT:g} s, or past the run's deadline"
    return f"{type(exc).__name__}: {exc}"[:200]


async def _gather_or_abort(tasks: list[asyncio.Task[None]], replies: list[Reply]) -> None:
    """Wait for every client; once most replies have failed, cancel the rest as failed.

    A run where most replies failed measures nothing more by going on, and a broken stack
    would otherwise hold the whole sitting until the deadline.
    """
    pending: set[asyncio.Task[None]] = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        failed = sum(1 for r in replies if r.error)
        if pending and failed * 2 > len(replies):
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            for reply in replies:
                if not reply.finished_ns:
                    reply.error = f"aborted: {failed} of {len(replies)} replies had failed"
                    reply.finished_ns = time.time_ns()
            return


async def _released(
    target: SeedTarget | ProductTarget,
    args: argparse.Namespace,
    meter: Meter,
    gate: asyncio.Event,
    tasks: list[asyncio.Task[None]],
    replies: list[Reply],
) -> int:
    """Open the gate to every client at once and wait for them all, metered (and recorded by
    py-spy with --profile); when the gate opened (ns)."""
    await asyncio.sleep(0)  # every task to the gate, so they start together
    async with _profiled(target, args):
        meter.begin()
        started = time.time_ns()
        gate.set()
        await _gather_or_abort(tasks, replies)
        meter.end()
    return started


async def _bounded(coros: list[Awaitable[Any]], limit: int) -> list[Any]:
    """Run the coroutines, ``limit`` at a time; results or exceptions, in order."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


# --- the stub ------------------------------------------------------------------------------

_STUB_AUTH = {"Authorization": f"Bearer {STUB_API_KEY}"}


async def _stub_reset(
    stub: StubProcess, scripts: tuple[dict[str, Any], ...] = (WARM_UP_SCRIPT,)
) -> None:
    """Forget recorded requests and scripts; script the warm-up prompt's short reply (and the
    tool scenarios' tool calls) again: of the scripts that match a request, the last wins."""
    root = stub.url.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root, timeout=10, headers=_STUB_AUTH) as http:
        (await http.post("/_stub/reset")).raise_for_status()
        for script in scripts:
            (await http.post("/_stub/scripts", json=script)).raise_for_status()


@dataclass
class Arrivals:
    """What the stub recorded of the measured replies' streamed requests, by tag."""

    times_ns: dict[str, list[int]] = field(default_factory=dict)  # each turn's, in order
    tool_outputs: dict[str, list[str]] = field(default_factory=dict)  # the last turn's


async def _stub_arrivals(stub: StubProcess) -> Arrivals:
    """When the stub received each streamed request of each reply (a reply with tool calls
    makes one per turn), and the tool results its last one carried."""
    root = stub.url.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root, timeout=30, headers=_STUB_AUTH) as http:
        answer = await http.get("/_stub/requests")
        answer.raise_for_status()
    arrivals = Arrivals()
    for record in answer.json():
        body = record.get("body")
        # The product's title requests carry the message too, but are not streamed.
        if not isinstance(body, dict) or not body.get("stream"):
            continue
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        found = TAG.search(str(users[-1].get("content"))) if users else None
        if found:
            tag = found.group(1)
            arrivals.times_ns.setdefault(tag, []).append(int(record["received_at"] * 1e9))
            outputs = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
            arrivals.tool_outputs[tag] = outputs
    return arrivals


# --- replies over HTTP: the seed's relay (one SSE event per token), the product's SSE and
# ChatKit paths -----------------------------------------------------------------------------

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _sse_open(url: str) -> Connection:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _sse_open_all(url: str, count: int) -> list[Connection]:
    """``count`` connections, opened beforehand (``CONNECT_CONCURRENCY`` at a time)."""
    conns = await _bounded([_sse_open(url) for _ in range(count)], CONNECT_CONCURRENCY)
    for conn in conns:
        if isinstance(conn, BaseException):
            for _, writer in (c for c in conns if not isinstance(c, BaseException)):
                writer.close()
            raise RuntimeError(f"could not connect to {url}: {conn!r}")
    return conns


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 POST of a JSON body that asks for an event stream."""
    head = [
        f"POST {url} HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        "accept: text/event-stream",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _relay_event(event: dict[str, Any]) -> Event:
    """The relay's event: one token; the response's end is the reply's."""
    return Event(event["token"])


def _relay_request(prompt: str) -> bytes:
    return _post("/api/stream/message", json.dumps({"message": prompt}).encode())


async def _sse_reply(
    conn: Connection,
    reply: Reply,
    gate: asyncio.Event,
    deadline: float,
    request: bytes,
    read: Callable[[dict[str, Any]], Event] = _relay_event,
) -> None:
    """Send the request and read the SSE to its end, on an already open connection; each
    event's ``data:`` goes through ``read``. A reader that never says the reply ended (the
    relay's) leaves it complete when the response ends.

    A small HTTP/1.1 reader (chunked body, events split on blank lines, an incomplete event
    kept for the next chunk): httpx would spend more of the shared CPU per event than the
    product's WebSocket client does per frame.
    """
    reader, writer = conn
    ends = read is not _relay_event  # the product's paths say when the reply ends
    await gate.wait()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline), asyncio.timeout(IDLE_TIMEOUT) as idle:
            reply.sent_ns = time.time_ns()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            if status != b"200" or b"chunked" not in head.lower():
                raise RuntimeError(f"answered {head[:200]!r}")
            pending = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                idle.reschedule(loop.time() + IDLE_TIMEOUT)  # wait_for would cost a task each
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                pending += (await reader.readexactly(size + 2))[:-2]
                now = time.time_ns()
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: "):
                            seen = read(json.loads(line[6:]))
                            if seen.text:
                                reply.add(seen.text, now)
                            reply.message_id = reply.message_id or seen.message_id
                            reply.status = seen.end or reply.status
            if not ends:
                reply.status = "complete"
            elif not reply.status:
                raise RuntimeError("the response ended before the reply did")
            reply.done = True
    except Exception as exc:  # counted and reported, never hidden
        reply.error = _describe(exc)
    finally:
        writer.close()
    reply.finished_ns = time.time_ns()


class SeedTarget:
    """The seed's relay on the stub, warmed up; ``seed-tools``: its agent has the tool the
    ``tools`` scenario calls, and the stub answers with the same tool calls."""

    processes = 1

    def __init__(self, stub: StubProcess, scenario: str = "seed") -> None:
        self.scenario, self.stub = scenario, stub
        tools = scenario == "seed-tools"
        self.scripts = TOOL_SCRIPTS if tools else (WARM_UP_SCRIPT,)
        self.relay = RelayProcess(stub.url, tools=TOOL if tools else "")

    def __enter__(self) -> SeedTarget:
        """Start the relay and send it one reply, not measured."""
        self.relay.__enter__()
        try:
            asyncio.run(self._warm_up())
        except BaseException:
            self.relay.kill()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the relay."""
        self.relay.kill()

    @property
    def server_pids(self) -> list[int]:
        """The server side: the uvicorn process."""
        return [self.relay.pid]

    async def _warm_up(self) -> None:
        await _stub_reset(self.stub, self.scripts)
        reply, gate = Reply("warm-up"), asyncio.Event()
        gate.set()
        conn = await _sse_open(self.relay.url)
        await _sse_reply(conn, reply, gate, time.monotonic() + 60, _relay_request(WARM_UP))
        if reply.error:
            raise RuntimeError(f"the relay's warm-up reply failed: {reply.error}")

    async def measure(self, streams: int, meter: Meter, args: argparse.Namespace) -> Measured:
        """``streams`` replies started at once, their connections opened beforehand."""
        run = uuid.uuid4().hex[:8]
        replies = [Reply(f"{run}-{i}") for i in range(streams)]
        conns = await _sse_open_all(self.relay.url, streams)
        await asyncio.to_thread(_settle, self.server_pids)
        await _stub_reset(self.stub, self.scripts)
        gate = asyncio.Event()
        deadline = time.monotonic() + args.timeout
        tasks = [
            asyncio.create_task(
                _sse_reply(
                    conn, reply, gate, deadline, _relay_request(PROMPT.format(tag=reply.tag))
                )
            )
            for conn, reply in zip(conns, replies, strict=True)
        ]
        started = await _released(self, args, meter, gate, tasks, replies)
        duration = (max(r.finished_ns for r in replies) - started) / 1e9
        return Measured(replies, [], duration, meter.spent, await _stub_arrivals(self.stub))


# --- the product: WebSocket clients on daphne ----------------------------------------------


async def _open_socket(base_url: str, thread_id: str, cookie: str) -> ClientConnection:
    """A thread's socket as a browser opens it (same Origin, session cookie), past `ready`."""
    ws = await connect(
        f"{base_url.replace('http', 'ws', 1)}/ws/threads/{thread_id}/",
        origin=base_url,
        additional_headers={"Cookie": cookie},
        open_timeout=60,
        close_timeout=5,
        ping_interval=None,  # like a browser: daphne pings, the client only answers
        max_queue=None,
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if ready.get("type") != "ready" or ready.get("active") is not None:
        await ws.close()
        raise RuntimeError(f"unexpected first frame {ready!r}")
    return ws


async def _follow(
    ws: ClientConnection,
    reply: Reply,
    gate: asyncio.Event,
    deadline: float,
    http: httpx.AsyncClient,
    thread_id: str,
    prompt: str | None,
) -> None:
    """Read one reply's frames to its end as the page's client does; ``prompt`` set, send
    `start` first (the client that asks), else only watch (a second tab)."""
    await gate.wait()
    seq, resyncing, terminal = -1, False, False
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline), asyncio.timeout(IDLE_TIMEOUT) as idle:
            if prompt is not None:
                command = {"command": "start", "message": prompt, "client_id": str(uuid.uuid4())}
                reply.sent_ns = time.time_ns()
                await ws.send(json.dumps(command))
            while True:
                raw = await ws.recv()
                now = time.time_ns()
                idle.reschedule(loop.time() + IDLE_TIMEOUT)  # wait_for would cost a task each
                frame = json.loads(raw)
                kind = frame["type"]
                if kind == "ready":
                    if not resyncing:
                        continue
                    resyncing = False
                    active = frame["active"]
                    if not terminal and active and active["message_id"] == reply.message_id:
                        seq = active["seq"]
                        reply.add(active["content"], now, framed=False)
                        continue
                    # Ended meanwhile: the saved message is the record, as for the page.
                    saved = await _saved(http, thread_id, reply.message_id)
                    reply.add(saved.get("content", ""), now, framed=False)
                    reply.status, reply.fetched = saved.get("status", "missing"), True
                    break
                if "message_id" not in frame:
                    if kind == "error":  # about the command itself, e.g. rate_limited
                        raise RuntimeError(f"error frame {frame['code']}: {frame['message']}")
                    continue  # our persisted `message`, a `thread` title
                if not reply.message_id:
                    reply.message_id = frame["message_id"]
                elif frame["message_id"] != reply.message_id:
                    continue
                ends = kind in ("complete", "error")
                terminal = terminal or ends
                if resyncing or frame["seq"] <= seq:
                    continue  # covered by the snapshot on its way, or already had
                if frame["seq"] != seq + 1:
                    # A gap: frames were lost on the way; the protocol's answer is a resync.
                    reply.resyncs += 1
                    resyncing = True
                    await ws.send('{"command": "resync"}')
                    continue
                seq = frame["seq"]
                if kind == "token":
                    reply.add(frame["token"], now)
                elif ends:
                    reply.status = frame.get("status") or frame.get("code") or kind
                    break
            reply.done = True
    except Exception as exc:  # counted and reported, never hidden
        reply.error = _describe(exc)
    reply.finished_ns = time.time_ns()


async def _saved(http: httpx.AsyncClient, thread_id: str, message_id: str) -> dict[str, Any]:
    """The message as the API returns it, as a page that lost a reply's end reads it."""
    answer = await http.get(f"/api/threads/{thread_id}/messages/")
    answer.raise_for_status()
    return next((m for m in answer.json()["results"] if m["id"] == message_id), {})


class Rows:
    """Reads the saved replies straight from the product's database (SQLite or PostgreSQL)."""

    def __init__(self, stack: ProductStack) -> None:
        self.url = stack.env.get("DATABASE_URL", "")
        self.sqlite = stack.workdir / "db.sqlite3"
        self._postgres: Any = None  # one connection, kept: a new one costs PostgreSQL a fork

    def _read(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        if not ids:
            return {}
        query = "SELECT id, status, content FROM chat_message WHERE id "
        if self.url:
            import psycopg

            if self._postgres is None:
                self._postgres = psycopg.connect(self.url, autocommit=True)
            found = self._postgres.execute(query + "= ANY(%s)", [[uuid.UUID(i) for i in ids]])
            return {str(row[0]): (row[1], row[2]) for row in found}
        # WAL mode: a reader never blocks the product's writes. Django keeps UUIDs as hex.
        with contextlib.closing(sqlite3.connect(self.sqlite, timeout=10)) as conn:
            marks = ",".join("?" * len(ids))
            found = conn.execute(query + f"IN ({marks})", [uuid.UUID(i).hex for i in ids])
            return {str(uuid.UUID(row[0])): (row[1], row[2]) for row in found}

    async def read(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """Message id -> (status, content), for those of ``ids`` that exist."""
        return await asyncio.to_thread(self._read, ids)

    def close(self) -> None:
        """Close the PostgreSQL connection, if one was opened."""
        if self._postgres is not None:
            self._postgres.close()
            self._postgres = None


async def _sample_lag(replies: list[Reply], rows: Rows, stop: asyncio.Event, out: list) -> None:
    """Every half second, how far the saved rows of some replies in flight trail their clients.

    The lag of a row is how long ago its client had the first token the row does not hold
    (0 when the row holds all the client has).
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHECKPOINT_SAMPLE_SECONDS)
        live = [r for r in replies if r.message_id and r.token_times and not r.finished_ns]
        picked = random.sample(live, min(len(live), CHECKPOINT_SAMPLE_REPLIES))
        if not picked:
            continue
        now = time.time_ns()
        had = {r.message_id: list(r.token_times) for r in picked}
        try:
            found = await rows.read(list(had))
        except Exception:
            continue  # a read that fails says nothing of the lag; the final check reads all
        for message_id, (_, content) in found.items():
            saved, times = len(content) // TOKEN_CHARS, had[message_id]
            out.append((now - times[saved]) / 1e6 if saved < len(times) else 0.0)


def _settle(pids: list[int]) -> None:
    for pid in pids:
        wait_idle(pid)


def _start_servers(env: dict[str, str], count: int, cleanup: contextlib.ExitStack) -> list:
    """``count`` fresh daphne processes, started side by side and killed on cleanup (their
    figures are taken by then: a graceful stop would only drain for nothing).

    Retried a few times a minute apart: another engineer's half-saved edit of the product can
    stop daphne from starting.
    """
    for attempt in range(1, START_RETRIES + 1):
        servers = [Daphne(env) for _ in range(count)]
        try:
            with ThreadPoolExecutor(count) as pool:
                for future in [pool.submit(server.start) for server in servers]:
                    future.result()
            for server in servers:
                cleanup.callback(server.kill)
            return servers
        except RuntimeError as exc:
            for server in servers:
                server.kill()
            if attempt == START_RETRIES:
                raise
            print(f"  daphne did not start ({str(exc)[-300:]!r}); retrying in 60 s", flush=True)
            time.sleep(60)
    raise AssertionError("unreachable")


class ProductTarget:
    """One or two fresh daphne processes of a stack (two: behind the balancer), warmed up;
    its replies asked and read over WebSockets. ``tools``: the stub answers each reply with
    two rounds of tool calls first."""

    def __init__(
        self,
        scenario: str,
        stack: ProductStack,
        stub: StubProcess,
        threads: Callable[[int], list[str]],
    ) -> None:
        self.scenario, self.stack, self.stub = scenario, stack, stub
        self.new_threads = threads  # unused threads of the bench user, made in bulk
        self.processes = 2 if scenario == "redis2" else 1
        self.scripts = TOOL_SCRIPTS if scenario == "tools" else (WARM_UP_SCRIPT,)
        self.rows = Rows(stack)
        self.servers: list[Daphne] = []
        self.balancer: BalancerProcess | None = None
        self.url = ""
        self.headers: dict[str, str] = {}
        self._cleanup = contextlib.ExitStack()

    def __enter__(self) -> ProductTarget:
        """Start the processes, log in, and send each process one reply, not measured."""
        self._cleanup.callback(self.rows.close)
        try:
            self.servers = _start_servers(self.stack.env, self.processes, self._cleanup)
            self.url = self.servers[0].url
            if self.processes > 1:
                self.balancer = BalancerProcess([s.port for s in self.servers])
                self._cleanup.enter_context(self.balancer)
                self.url = self.balancer.url
            client = login(self.url, BENCH_USER, BENCH_PASSWORD)
            with contextlib.closing(client):
                self.headers = {
                    "Cookie": cookie_header(client),
                    "X-CSRFToken": client.headers["X-CSRFToken"],
                }
            asyncio.run(self._warm_up())
        except BaseException:
            self._cleanup.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop every process."""
        self._cleanup.close()

    @property
    def server_pids(self) -> list[int]:
        """The server side: every daphne process."""
        return [s.process.pid for s in self.servers]

    @property
    def cookie(self) -> str:
        """The session cookie, for WebSocket handshakes."""
        return self.headers["Cookie"]

    async def _warm_up(self) -> None:
        await _stub_reset(self.stub, self.scripts)
        for server in self.servers:  # straight to each process, past the balancer
            async with httpx.AsyncClient(
                base_url=server.url, headers=self.headers, timeout=30
            ) as http:
                (thread,) = await asyncio.to_thread(self.new_threads, 1)
                ws = await _open_socket(server.url, thread, self.cookie)
                reply, gate = Reply("warm-up"), asyncio.Event()
                gate.set()
                await _follow(ws, reply, gate, time.monotonic() + 60, http, thread, WARM_UP)
                await ws.close()
                if reply.error or reply.status != "complete":
                    raise RuntimeError(f"the warm-up reply failed: {reply.error or reply.status}")

    async def _open_on_other(self, thread_id: str, not_on: int) -> ClientConnection:
        """A socket through the balancer that landed on a process other than ``not_on``."""
        assert self.balancer is not None
        for _ in range(10):  # round robin: the next connection goes to the other process
            ws = await _open_socket(self.url, thread_id, self.cookie)
            backend = await asyncio.to_thread(self.balancer.backend_of, ws.local_address[1])
            if backend != not_on:
                return ws
            await ws.close()
        raise RuntimeError("the balancer kept sending the watcher to the reply's own process")

    async def measure(self, streams: int, meter: Meter, args: argparse.Namespace) -> Measured:
        """``streams`` replies started at once on their own threads, sockets open beforehand."""
        run = uuid.uuid4().hex[:8]
        replies = [Reply(f"{run}-{i}") for i in range(streams)]
        watchers = [Reply(r.tag) for r in replies] if self.processes > 1 else []
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30) as http:
            threads = await asyncio.to_thread(self.new_threads, streams)
            opened = await _bounded(
                [_open_socket(self.url, t, self.cookie) for t in threads], CONNECT_CONCURRENCY
            )
            sockets = [ws for ws in opened if not isinstance(ws, BaseException)]
            try:
                if len(sockets) < len(opened):
                    failure = next(ws for ws in opened if isinstance(ws, BaseException))
                    raise RuntimeError(f"could not open a socket: {_describe(failure)}")
                if watchers:
                    assert self.balancer is not None
                    homes = await asyncio.gather(
                        *(
                            asyncio.to_thread(self.balancer.backend_of, ws.local_address[1])
                            for ws in sockets
                        )
                    )
                    # One at a time: with nothing else connecting, round robin sends each retry
                    # to the other process (concurrent openings can keep hitting the same one).
                    watching = await _bounded(
                        [self._open_on_other(t, h) for t, h in zip(threads, homes, strict=True)],
                        1,
                    )
                    sockets += [ws for ws in watching if not isinstance(ws, BaseException)]
                    if len(sockets) < 2 * streams:
                        failure = next(ws for ws in watching if isinstance(ws, BaseException))
                        raise RuntimeError(f"could not open a watcher: {_describe(failure)}")
                return await self._run(replies, watchers, threads, sockets, http, meter, args)
            finally:
                # Bounded: a socket that will not close in time goes with the event loop.
                closing = [asyncio.create_task(ws.close()) for ws in sockets]
                if closing:
                    await asyncio.wait(closing, timeout=30)

    async def _run(
        self,
        replies: list[Reply],
        watchers: list[Reply],
        threads: list[str],
        sockets: list[ClientConnection],
        http: httpx.AsyncClient,
        meter: Meter,
        args: argparse.Namespace,
    ) -> Measured:
        await asyncio.to_thread(_settle, self.server_pids)
        await _stub_reset(self.stub, self.scripts)
        gate, stop = asyncio.Event(), asyncio.Event()
        deadline = time.monotonic() + args.timeout
        tasks = [
            asyncio.create_task(
                _follow(ws, reply, gate, deadline, http, thread, PROMPT.format(tag=reply.tag))
            )
            for ws, reply, thread in zip(sockets, replies, threads, strict=False)
        ] + [
            asyncio.create_task(_follow(ws, reply, gate, deadline, http, thread, None))
            for ws, reply, thread in zip(sockets[len(replies) :], watchers, threads, strict=False)
        ]
        lag: list[float] = []
        sampler = asyncio.create_task(_sample_lag(replies, self.rows, stop, lag))
        started = await _released(self, args, meter, gate, tasks, replies + watchers)
        stop.set()
        await sampler
        return await self._measured(replies, watchers, started, meter, lag)

    async def _measured(
        self,
        replies: list[Reply],
        watchers: list[Reply],
        started: int,
        meter: Meter,
        lag: list[float],
    ) -> Measured:
        """The batch's figures, once its replies' rows are saved."""
        duration = (max(r.finished_ns for r in replies) - started) / 1e9
        ids = [r.message_id for r in replies if r.message_id]
        rows = await self.rows.read(ids)
        for _ in range(20):  # a final save may land just after `complete`: wait, bounded
            if all(rows.get(i, ("",))[0] not in ("", "pending", "streaming") for i in ids):
                break
            await asyncio.sleep(0.5)
            rows = await self.rows.read(ids)
        rss = sum(memory_mb(pid, "VmHWM") for pid in self.server_pids)
        arrivals = await _stub_arrivals(self.stub)
        return Measured(replies, watchers, duration, meter.spent, arrivals, rows, lag, rss)


class HttpTarget(ProductTarget):
    """One fresh daphne process (SQLite, in-process layer, as ``memory``), its replies asked
    over HTTP: ``sse`` POSTs ``/api/stream/message``, ``chatkit`` a ChatKit ``threads.create``
    (bench/http_paths.py); each reply in a new thread, on a connection opened beforehand."""

    @property
    def path(self) -> HttpPath:
        """The request and the reader of its events."""
        return PATHS[self.scenario]

    def _request(self, prompt: str) -> bytes:
        return _post(self.path.url, self.path.body(prompt), self.headers)

    async def _warm_up(self) -> None:
        await _stub_reset(self.stub, self.scripts)
        reply, gate = Reply("warm-up"), asyncio.Event()
        gate.set()
        conn = await _sse_open(self.url)
        request = self._request(WARM_UP)
        await _sse_reply(conn, reply, gate, time.monotonic() + 60, request, self.path.read)
        if reply.error or reply.status != "complete":
            raise RuntimeError(f"the warm-up reply failed: {reply.error or reply.status}")

    async def measure(self, streams: int, meter: Meter, args: argparse.Namespace) -> Measured:
        """``streams`` replies started at once, their connections opened beforehand."""
        run = uuid.uuid4().hex[:8]
        replies = [Reply(f"{run}-{i}") for i in range(streams)]
        conns = await _sse_open_all(self.url, streams)
        await asyncio.to_thread(_settle, self.server_pids)
        await _stub_reset(self.stub, self.scripts)
        gate, stop = asyncio.Event(), asyncio.Event()
        deadline = time.monotonic() + args.timeout
        tasks = [
            asyncio.create_task(
                _sse_reply(
                    conn,
                    reply,
                    gate,
                    deadline,
                    self._request(PROMPT.format(tag=reply.tag)),
                    self.path.read,
                )
            )
            for conn, reply in zip(conns, replies, strict=True)
        ]
        lag: list[float] = []
        sampler = asyncio.create_task(_sample_lag(replies, self.rows, stop, lag))
        started = await _released(self, args, meter, gate, tasks, replies)
        stop.set()
        await sampler
        return await self._measured(replies, [], started, meter, lag)


@contextlib.asynccontextmanager
async def _profiled(target: SeedTarget | ProductTarget, args: argparse.Namespace):
    """With ``--profile DIR``: py-spy samples every server process while the replies run."""
    if not args.profile:
        yield
        return
    spy = str(Path(sys.executable).with_name("py-spy"))
    args.profile.mkdir(parents=True, exist_ok=True)
    spies = []
    for pid in target.server_pids:
        name = f"{target.scenario}-{args.current}-{pid}.txt"
        command = [spy, "record", "--pid", str(pid), "--rate", "100", "--nonblocking"]
        command += ["--format", "raw", "--output", str(args.profile / name)]
        spies.append(
            await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        )
    await asyncio.sleep(1)  # py-spy attaches
    try:
        yield
    finally:
        for process in spies:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for process in spies:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)


# --- figures -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return round(ordered[rank], 2)


def _check_text(text: str) -> str:
    """What is wrong with a reply's text, token by token ("" when nothing is)."""
    if len(text) != TOKENS * TOKEN_CHARS:
        return f"{len(text) / TOKEN_CHARS:g} of {TOKENS} tokens"
    try:
        indexes = timestamp_tokens_indexes(text, TOKEN_CHARS)
        times = timestamp_tokens_times_ns(text, time.time_ns(), TOKEN_CHARS)
    except ValueError as exc:
        return str(exc)
    wrap = 64 ** (TOKEN_CHARS - 5)  # the index is modulo what its symbols can hold
    for k, index in enumerate(indexes):
        if index != k % wrap:
            return f"token {k} is token {index}: out of place"
    if any(later < earlier for earlier, later in zip(times, times[1:], strict=False)):
        return "tokens out of emission order"
    return ""


def _latencies(reply: Reply) -> list[float]:
    """Per token that came in a frame: its emission by the stub -> the client had it, ms."""
    emitted = timestamp_tokens_times_ns(reply.text, reply.finished_ns, TOKEN_CHARS)
    return [
        (had - sent) / 1e6
        for had, sent, framed in zip(reply.token_times, emitted, reply.framed, strict=False)
        if framed
    ]


def _tool_problem(m: Measured, tag: str) -> str:
    """What is wrong with a tool reply's turns ("" when nothing is): the stub must have had
    one request per turn, the last carrying what the tool answered to each call."""
    turns = len(m.arrivals.times_ns.get(tag, []))
    if turns != len(TOOL_ROUNDS) + 1:
        return f"{turns} provider turns, not {len(TOOL_ROUNDS) + 1}"
    outputs = [o.strip() for o in m.arrivals.tool_outputs.get(tag, [])]
    if outputs != [answer for _, answer in TOOL_ROUNDS]:
        return f"the tool answered {outputs!r}"[:200]
    return ""


def figures(m: Measured, product: bool, tools: bool = False) -> dict[str, Any]:
    """Every figure of one measured batch, flat; failed checks listed with samples.

    Timings come from every reply whose text decodes, failed or not: with failures, the
    percentiles leave out the tokens that never came, so they are lower bounds. The added
    TTFT is from the stub's arrival of the reply's last request (the text's turn): with tool
    calls, the turns before it are timed apart (``tool_turns``: first arrival to last).
    """
    failures: list[str] = []
    latency: list[float] = []
    added: list[float] = []
    raw_ttft: list[float] = []
    provider_ttft: list[float] = []
    provider_rates: list[float] = []
    to_provider: list[float] = []
    from_provider: list[float] = []
    tool_turns: list[float] = []
    delivered = framed_tokens = frames = 0
    for reply in m.replies:
        problem = reply.error or (
            f"ended {reply.status}" if reply.status != "complete" else _check_text(reply.text)
        )
        if not problem and product:
            status, content = m.rows.get(reply.message_id, ("missing", ""))
            if status != "complete" or content != reply.text:
                problem = f"saved row ({status}, {len(content)} chars) differs from the client's"
        if not problem and tools:
            problem = _tool_problem(m, reply.tag)
        if problem:
            failures.append(f"{reply.tag}: {problem}")
        delivered += len(reply.text) // TOKEN_CHARS
        framed_tokens += sum(reply.framed)
        frames += reply.frames
        try:
            latency += _latencies(reply)
            emitted = timestamp_tokens_times_ns(reply.text, reply.finished_ns, TOKEN_CHARS)
        except ValueError:
            continue  # not timestamp tokens: already a failure above
        if len(emitted) > 1 and emitted[-1] > emitted[0]:
            provider_rates.append((len(emitted) - 1) / ((emitted[-1] - emitted[0]) / 1e9))
        first = (reply.token_times[0] - reply.sent_ns) / 1e6
        raw_ttft.append(first)
        arrived = m.arrivals.times_ns.get(reply.tag)
        if arrived:
            own = (emitted[0] - arrived[-1]) / 1e6
            provider_ttft.append(own)
            added.append(first - own)
            to_provider.append((arrived[0] - reply.sent_ns) / 1e6)
            from_provider.append((reply.token_times[0] - emitted[0]) / 1e6)
            if len(arrived) > 1:
                tool_turns.append((arrived[-1] - arrived[0]) / 1e6)
    watcher_latency: list[float] = []
    for watcher in m.watchers:
        saved = m.rows.get(next((r.message_id for r in m.replies if r.tag == watcher.tag), ""))
        problem = watcher.error or _check_text(watcher.text)
        if not problem and (saved is None or saved[1] != watcher.text):
            problem = "text differs from the saved row"
        if problem:
            failures.append(f"{watcher.tag} (watcher): {problem}")
        with contextlib.suppress(ValueError):
            watcher_latency += _latencies(watcher)
    out: dict[str, Any] = {
        "replies": len(m.replies),
        "failures": len(failures),
        "failure_samples": failures[:3],
        "tokens_delivered": delivered,
        "duration_s": round(m.duration_s, 2),
        "tokens_per_s": round(delivered / m.duration_s) if m.duration_s else None,
        "provider_tokens_per_s": _median(provider_rates),
        "latency_p50_ms": percentile(latency, 50),
        "latency_p99_ms": percentile(latency, 99),
        "latency_max_ms": percentile(latency, 100),
        "ttft_added_p50_ms": percentile(added, 50),
        "ttft_added_p99_ms": percentile(added, 99),
        "ttft_p50_ms": percentile(raw_ttft, 50),
        "to_provider_p50_ms": percentile(to_provider, 50),
        "to_provider_p10_ms": percentile(to_provider, 10),
        "to_provider_p90_ms": percentile(to_provider, 90),
        "from_provider_p50_ms": percentile(from_provider, 50),
        "from_provider_p90_ms": percentile(from_provider, 90),
        "provider_ttft_p50_ms": percentile(provider_ttft, 50),
        "provider_turns_per_reply": _median(
            [len(m.arrivals.times_ns.get(r.tag, [])) for r in m.replies]
        ),
        "tokens_per_frame": round(framed_tokens / frames, 2) if frames else None,
        "resyncs": sum(r.resyncs for r in m.replies),
        "fetched_from_api": sum(r.fetched for r in m.replies),
        "cpu_s": m.cpu_s,
    }
    for name, spent in m.cpu_s.items():  # "server" is the one compared; the rest beside it
        out[f"cpu_{name}_ms_per_1k"] = round(spent / delivered * 1e6, 1) if delivered else None
    if m.replies:
        out["cpu_server_ms_per_reply"] = round(m.cpu_s.get("server", 0) / len(m.replies) * 1e3, 2)
    if tool_turns:
        out["tool_turns_p50_ms"] = percentile(tool_turns, 50)
        out["tool_turns_p99_ms"] = percentile(tool_turns, 99)
    # Above ~90% the clients, not the server, may be what the latency measures.
    if m.duration_s:
        out["client_cpu_pct"] = round(100 * m.cpu_s.get("client", 0) / m.duration_s, 1)
    if product:
        out["checkpoint_lag_p99_ms"] = percentile(m.lag_samples_ms, 99)
        out["checkpoint_lag_max_ms"] = percentile(m.lag_samples_ms, 100)
        out["checkpoint_samples"] = len(m.lag_samples_ms)
        out["rss_peak_mb"] = round(m.rss_peak_mb, 1) if m.rss_peak_mb else None
    if m.watchers:
        out["watcher_latency_p50_ms"] = percentile(watcher_latency, 50)
        out["watcher_latency_p99_ms"] = percentile(watcher_latency, 99)
        out["watcher_resyncs"] = sum(w.resyncs for w in m.watchers)
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def aggregate(runs: list[dict[str, Any]], seed: dict[str, Any] | None) -> dict[str, Any]:
    """Median and worst of each figure over the runs; ratios of medians to the seed's."""
    summary: dict[str, Any] = {"runs": len(runs), "median": {}, "worst": {}}
    names = {k for run in runs for k, v in run.items() if isinstance(v, int | float)}
    for name in sorted(names):
        values = [run[name] for run in runs if isinstance(run.get(name), int | float)]
        summary["median"][name] = _median(values)
        worst = min if name in HIGHER_IS_BETTER else max
        summary["worst"][name] = round(worst(values), 2) if values else None
    if seed is not None:
        mine, theirs = summary["median"], seed["median"]
        summary["x_seed"] = {
            name: _ratio(mine.get(name), theirs.get(name)) for name in RATIO_FIGURES
        }
        if "watcher_latency_p50_ms" in mine:  # the other process's socket, against the same
            for q in ("p50", "p99"):
                summary["x_seed"][f"watcher_latency_{q}_ms"] = _ratio(
                    mine.get(f"watcher_latency_{q}_ms"), theirs.get(f"latency_{q}_ms")
                )
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


# --- the sitting ---------------------------------------------------------------------------


@dataclass
class Sitting:
    """Everything shared by the runs: the work folder, private services, product stacks."""

    args: argparse.Namespace
    workdir: Path
    redis: RedisInstance | None = None
    postgres: PostgresInstance | None = None
    stacks: dict[str, ProductStack] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    spare_threads: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # runs not made, out of time

    def threads(self, scenario: str, count: int) -> list[str]:
        """``count`` threads never used, of the scenario's stack (made in bulk when short:
        through the API, 200 would cost a run seconds of daphne's time before it starts)."""
        spare = self.spare_threads.setdefault(scenario, [])
        if len(spare) < count:
            spare += _bulk_threads(self.stacks[scenario], max(count, THREADS_IN_BULK))
        taken, self.spare_threads[scenario] = spare[:count], spare[count:]
        return taken

    @contextlib.contextmanager
    def stub(self, rate: float) -> Iterator[StubProcess]:
        """A stub streaming at ``rate`` tokens/s per reply, every stack's daphne pointed at it."""
        with StubProcess(tokens=TOKENS, delay_ms=1000 / rate, token_chars=TOKEN_CHARS) as stub:
            for stack in self.stacks.values():
                stack.env["OPENAI_BASE_URL"] = stub.url  # read by each daphne as it starts
            yield stub

    def target(self, scenario: str, stub: StubProcess) -> SeedTarget | ProductTarget:
        """A fresh target of the scenario on the stub (start it with ``with``)."""
        if scenario in RELAYS:
            return SeedTarget(stub, scenario)
        kind = HttpTarget if scenario in PATHS else ProductTarget
        return kind(scenario, self.stacks[scenario], stub, lambda n: self.threads(scenario, n))

    def meter(self, target: SeedTarget | ProductTarget, stub: StubProcess) -> Meter:
        """What to count: the server side, and beside it every other process."""
        pids = target.server_pids
        readers: dict[str, Callable[[], float]] = {
            # With the children it waited for: the calculator's processes of a tool call.
            "server": lambda: sum(cpu_seconds(pid, children=True) for pid in pids),
            "stub": lambda: cpu_seconds(stub.pid),
            "client": lambda: cpu_seconds(os.getpid()),
        }
        if target.scenario in REDIS_SCENARIOS:
            assert self.redis is not None and self.postgres is not None
            url, data = self.redis.url, self.postgres.data
            readers["redis"] = lambda: redis_cpu_seconds(url)
            readers["postgres"] = lambda: postgres_cpu_seconds(data)
        if isinstance(target, ProductTarget) and target.balancer is not None:
            balancer = target.balancer.pid
            readers["balancer"] = lambda: cpu_seconds(balancer)
        return Meter(readers)

    def out_of_time(self, what: str) -> bool:
        """True, and noted, once the sitting has run ``--max-minutes``: what is left is
        skipped, so a sitting on a shared machine always ends."""
        if time.monotonic() - self.started < self.args.max_minutes * 60:
            return False
        self.skipped.append(what)
        if len(self.skipped) == 1:
            print(f"{self.clock()} past --max-minutes: skipping from {what} on", flush=True)
        return True

    def clock(self) -> str:
        """Minutes:seconds since the sitting began, for progress lines."""
        seconds = int(time.monotonic() - self.started)
        return f"[{seconds // 60:02d}:{seconds % 60:02d}]"


def measure_once(
    sitting: Sitting, scenario: str, stub: StubProcess, streams: int
) -> dict[str, Any]:
    """One run with fresh processes; its figures, or the error that stopped it."""
    try:
        with sitting.target(scenario, stub) as target:
            meter = sitting.meter(target, stub)
            measured = asyncio.run(target.measure(streams, meter, sitting.args))
        return figures(measured, scenario not in RELAYS, scenario in TOOL_SCENARIOS)
    except Exception as exc:
        return {"replies": streams, "failures": streams, "failure_samples": [_describe(exc)]}


def _progress(sitting: Sitting, label: str, f: dict[str, Any]) -> None:
    print(
        f"{sitting.clock()} {label:28} p50 {f.get('latency_p50_ms')} p99 "
        f"{f.get('latency_p99_ms')} ms, +ttft p50 {f.get('ttft_added_p50_ms')} ms, "
        f"{f.get('tokens_per_s')} tok/s, {f.get('tokens_per_frame')} tok/frame, "
        f"cpu {f.get('cpu_server_ms_per_1k')} ms/1k (client {f.get('client_cpu_pct')}%), "
        f"failed {f['failures']}" + (f" {f['failure_samples'][:1]}" if f["failures"] else ""),
        flush=True,
    )


def scenarios_at(args: argparse.Namespace, load: Load) -> list[str]:
    """The scenarios run at a load: every one chosen at a side load, else the main ones."""
    if load in args.side_loads:
        return list(args.scenarios)
    return [s for s in args.scenarios if s in MAIN_SCENARIOS]


def all_loads(args: argparse.Namespace) -> list[Load]:
    """``--loads``, then the side loads that are not among them."""
    return args.loads + [load for load in args.side_loads if load not in args.loads]


def run_loads(sitting: Sitting) -> list[dict[str, Any]]:
    """Every load, ``--runs`` times, the scenarios alternating; every run's figures."""
    args, runs = sitting.args, []
    for load in all_loads(args):
        scenarios = scenarios_at(args, load)
        with sitting.stub(load.rate) as stub:
            for index in range(args.runs):
                # Reversed every other run: no scenario always follows the same one.
                order = scenarios if index % 2 == 0 else scenarios[::-1]
                for scenario in order:
                    if sitting.out_of_time(f"{load.name} run {index + 1} {scenario}"):
                        return runs
                    args.current = f"{load.name}-run{index + 1}"
                    f = measure_once(sitting, scenario, stub, load.streams)
                    runs.append({"scenario": scenario, "load": load.name, "run": index + 1, **f})
                    _progress(sitting, f"{load.name} run {index + 1} {scenario}", f)
    return runs


def ramp(sitting: Sitting, scenario: str, stub: StubProcess) -> dict[str, Any]:
    """Capacity: replies at ``--ramp-rate`` tokens/s each, more of them each step (x1.25)
    until the p99 per-token latency reaches 100 ms or a reply fails, twice; one set of
    processes."""
    args, steps = sitting.args, []

    def step(target: SeedTarget | ProductTarget, streams: int) -> bool:
        if sitting.out_of_time(f"ramp {scenario} {streams}"):
            return False
        args.current = f"ramp-{streams}"
        try:
            f = figures(
                asyncio.run(target.measure(streams, sitting.meter(target, stub), args)),
                product=scenario not in RELAYS,
            )
        except Exception as exc:
            f = {"failures": streams, "failure_samples": [_describe(exc)]}
        p99 = f.get("latency_p99_ms")
        passed = not f["failures"] and p99 is not None and p99 < LATENCY_BOUND_MS
        steps.append({"streams": streams, "passed": passed, **f})
        _progress(sitting, f"ramp {scenario} {streams}x{args.ramp_rate:g}", f)
        return passed

    def confirmed(target: SeedTarget | ProductTarget, streams: int) -> bool:
        # A failing step is run once more: one noisy run on the shared machine must not end
        # a ramp that one more step would have passed.
        return step(target, streams) or step(target, streams)

    try:
        with sitting.target(scenario, stub) as target:
            streams = RAMP_START
            if confirmed(target, streams):
                while streams < RAMP_MAX_STREAMS:
                    streams = max(streams + 1, round(streams * RAMP_FACTOR))
                    if not confirmed(target, streams):
                        break
            else:
                while streams > 1:
                    streams = max(1, streams // 2)
                    if confirmed(target, streams):
                        break
    except Exception as exc:
        steps.append({"error": _describe(exc)})
    passed = [s for s in steps if s.get("passed")]
    best = max(passed, key=lambda s: s["tokens_per_s"], default=None)
    return {
        "scenario": scenario,
        "rate": args.ramp_rate,
        "capacity_tokens_per_s": best["tokens_per_s"] if best else None,
        "capacity_streams": best["streams"] if best else None,
        "steps": steps,
    }


def _bulk_threads(stack: ProductStack, count: int) -> list[str]:
    """``count`` threads of the bench user, made in one transaction (the API would take
    minutes for thousands)."""
    code = (
        "from django.contrib.auth.models import User; from chat.models import Thread; "
        f"u = User.objects.get(username={BENCH_USER!r}); "
        f"made = Thread.objects.bulk_create([Thread(owner=u) for _ in range({count})]); "
        "print(' '.join(str(t.id) for t in made))"
    )
    out = manage(stack.env, "shell", "-c", code)
    # Only the ids: the shell may say other things (the objects it imported) first.
    return re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)


async def _idle_replies(target: ProductTarget, thread: str) -> tuple[list[float], list[str]]:
    """``IDLE_REPLIES`` replies one after another on one thread: latencies, and failures."""
    latency, failures = [], []
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=30) as http:
        ws = await _open_socket(target.url, thread, target.cookie)
        try:
            for index in range(IDLE_REPLIES):
                reply, gate = Reply(f"idle-{index}"), asyncio.Event()
                gate.set()
                prompt = PROMPT.format(tag=reply.tag)
                await _follow(ws, reply, gate, time.monotonic() + 60, http, thread, prompt)
                problem = reply.error or _check_text(reply.text)
                if problem:
                    failures.append(problem)
                else:
                    latency += _latencies(reply)
        finally:
            await ws.close()
    return latency, failures


async def _idle(target: ProductTarget, threads: list[str], count: int) -> dict[str, Any]:
    pid = target.server_pids[0]
    measured, *idle_threads = threads
    before, failures = await _idle_replies(target, measured)
    await asyncio.to_thread(wait_idle, pid)
    rss_before = memory_mb(pid, "VmRSS")
    sockets: list[ClientConnection] = []
    opening_started = time.monotonic()
    try:
        for start in range(0, count, IDLE_BATCH):
            batch = idle_threads[start : start + IDLE_BATCH]
            opened = await _bounded(
                [_open_socket(target.url, t, target.cookie) for t in batch], CONNECT_CONCURRENCY
            )
            sockets += [ws for ws in opened if not isinstance(ws, BaseException)]
            errors = [ws for ws in opened if isinstance(ws, BaseException)]
            if errors:
                raise RuntimeError(f"{len(errors)} idle sockets failed: {_describe(errors[0])}")
            if len(sockets) % 1000 < IDLE_BATCH:
                print(f"  {len(sockets)} idle sockets open", flush=True)
        opening_s = time.monotonic() - opening_started
        await asyncio.to_thread(wait_idle, pid, seconds=0.5, limit=30)
        rss_after = memory_mb(pid, "VmRSS")
        after, more = await _idle_replies(target, measured)
        failures += more
    finally:
        closing = [asyncio.create_task(ws.close()) for ws in sockets]
        for start in range(0, len(closing), 1000):
            await asyncio.wait(closing[start : start + 1000], timeout=60)
    limit = _open_files_limit(pid)
    return {
        "sockets": len(sockets),
        "opening_s": round(opening_s, 1),
        "daphne_open_files_limit": limit,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "kib_per_socket": round((rss_after - rss_before) * 1024 / len(sockets), 1),
        "latency_without_p50_ms": percentile(before, 50),
        "latency_without_p99_ms": percentile(before, 99),
        "latency_with_p50_ms": percentile(after, 50),
        "latency_with_p99_ms": percentile(after, 99),
        "failures": len(failures),
        "failure_samples": failures[:3],
    }


def _open_files_limit(pid: int) -> str:
    """A process's open-files limit, soft / hard, from /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " / ".join(line.split()[3:5])
    return ""


def idle_sockets(sitting: Sitting, stub: StubProcess) -> dict[str, Any]:
    """Idle sockets on one daphne process (SQLite, in-process layer): memory per socket, and
    a reply on one thread with and without them."""
    count = sitting.args.idle_sockets
    threads = sitting.threads("memory", count + 1)
    try:
        with sitting.target("memory", stub) as target:
            return asyncio.run(_idle(target, threads, count))
    except Exception as exc:
        return {"sockets": 0, "failures": 1, "failure_samples": [_describe(exc)]}


# --- output --------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a median of counts: 0, not 0.00
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pair(summary: dict[str, Any], a: str, b: str) -> str:
    med, worst = summary["median"], summary["worst"]
    return f"{_fmt(med.get(a))} / {_fmt(med.get(b))} ({_fmt(worst.get(a))} / {_fmt(worst.get(b))})"


def table(summaries: list[dict[str, Any]]) -> str:
    """The markdown table: median (worst) of the runs, × = ratio of medians to the seed's."""
    head = (
        "| scenario | load | token latency p50 / p99 ms, median (worst) | × seed p50 / p99 "
        "| added TTFT p50 / p99 ms | × seed p50 | tokens / frame | server CPU ms / 1k tokens "
        "| × seed | beside: Redis / PostgreSQL / balancer ms / 1k | tokens/s | × seed "
        "| checkpoint lag p99 ms | watcher p50 / p99 ms, resyncs | resyncs | failed |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in summaries:
        med, x, cpu = s["median"], s.get("x_seed", {}), "cpu_server_ms_per_1k"
        watcher = "–"
        if "watcher_latency_p50_ms" in med:
            watcher = (
                f"{_fmt(med.get('watcher_latency_p50_ms'))} / "
                f"{_fmt(med.get('watcher_latency_p99_ms'))} (× seed "
                f"{_fmt(x.get('watcher_latency_p50_ms'))} / "
                f"{_fmt(x.get('watcher_latency_p99_ms'))}), {_fmt(med.get('watcher_resyncs'))}"
            )
        beside = " / ".join(
            _fmt(med.get(f"cpu_{name}_ms_per_1k")) for name in ("redis", "postgres", "balancer")
        )
        cells = [
            s["scenario"],
            s["load"],
            _pair(s, "latency_p50_ms", "latency_p99_ms"),
            f"{_fmt(x.get('latency_p50_ms'))} / {_fmt(x.get('latency_p99_ms'))}",
            _pair(s, "ttft_added_p50_ms", "ttft_added_p99_ms"),
            _fmt(x.get("ttft_added_p50_ms")),
            _fmt(med.get("tokens_per_frame")),
            f"{_fmt(med.get(cpu))} ({_fmt(s['worst'].get(cpu))})",
            _fmt(x.get("cpu_server_ms_per_1k")),
            beside,
            _fmt(med.get("tokens_per_s")),
            _fmt(x.get("tokens_per_s")),
            _fmt(med.get("checkpoint_lag_p99_ms")),
            watcher,
            _fmt(med.get("resyncs")),
            _fmt(s["failed_total"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CHATKIT_FIGURES = (
    "cpu_server_ms_per_1k",
    "tokens_per_frame",
    "latency_p50_ms",
    "latency_p99_ms",
    "ttft_added_p50_ms",
    "ttft_added_p99_ms",
)
TOOL_PAIRS = (("sdk", "seed", "seed-tools"), ("product", "memory", "tools"))
TOOL_FIGURES = ("cpu_server_ms_per_reply", "ttft_p50_ms", "ttft_added_p50_ms", "latency_p99_ms")


def _paired(runs: list[dict[str, Any]], load: str, a: str, b: str) -> list[tuple[dict, dict]]:
    """The runs of scenarios ``a`` and ``b`` at a load, paired by run (each pair measured
    one after the other, on the same stub)."""
    found = {(r["scenario"], r["run"]): r for r in runs if r["load"] == load}
    return [
        (found[(a, n)], found[(b, n)])
        for n in sorted({r["run"] for r in runs})
        if (a, n) in found and (b, n) in found
    ]


def _values(pairs: list[tuple[dict, dict]], name: str, side: int) -> list[float]:
    return [p[side][name] for p in pairs if isinstance(p[side].get(name), int | float)]


def _pair_stats(pairs: list[tuple[dict, dict]], name: str) -> dict[str, Any]:
    """Medians of a figure in a and b, and of b's ratio to and difference from a, run by run."""
    both = [
        (a[name], b[name])
        for a, b in pairs
        if isinstance(a.get(name), int | float) and isinstance(b.get(name), int | float)
    ]
    return {
        "a": _median(_values(pairs, name, 0)),
        "b": _median(_values(pairs, name, 1)),
        "ratio": _median([y / x for x, y in both if x]),
        "extra": _median([y - x for x, y in both]),
    }


def side_comparisons(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """ChatKit beside SSE, and what two rounds of tool calls add in the product beside what
    they add to the Agents SDK alone, at each load where both of a pair ran."""
    out: dict[str, list[dict[str, Any]]] = {"chatkit_sse": [], "tools": []}
    for load in dict.fromkeys(r["load"] for r in runs):
        pairs = _paired(runs, load, "sse", "chatkit")
        if pairs:
            row = {name: _pair_stats(pairs, name) for name in CHATKIT_FIGURES}
            failed = {
                s: sum(p[i]["failures"] for p in pairs) for i, s in enumerate(("sse", "chatkit"))
            }
            out["chatkit_sse"].append({"load": load, "runs": len(pairs), "failed": failed, **row})
        tools: dict[str, Any] = {"load": load}
        for who, plain, calling in TOOL_PAIRS:
            pairs = _paired(runs, load, plain, calling)
            if pairs:
                tools[who] = {name: _pair_stats(pairs, name) for name in TOOL_FIGURES}
                tools[who]["runs"] = len(pairs)
                tools[who]["tool_turns_p50_ms"] = _median(_values(pairs, "tool_turns_p50_ms", 1))
                tools[who]["tool_turns_p99_ms"] = _median(_values(pairs, "tool_turns_p99_ms", 1))
                tools[who]["failed"] = sum(a["failures"] + b["failures"] for a, b in pairs)
        if "sdk" in tools and "product" in tools:
            tools["product_extra_x_sdk_extra"] = {
                name: _ratio(tools["product"][name]["extra"], tools["sdk"][name]["extra"])
                for name in ("cpu_server_ms_per_reply", "ttft_p50_ms")
            }
            tools["product_extra_x_sdk_extra_by_run"] = {
                name: _extra_ratio_by_run(runs, load, name)
                for name in ("cpu_server_ms_per_reply", "ttft_p50_ms")
            }
        if len(tools) > 1:
            out["tools"].append(tools)
    return out


def _extra_ratio_by_run(runs: list[dict[str, Any]], load: str, name: str) -> float | None:
    """Median over the runs of (tools - memory) / (seed-tools - seed): both extras of one run."""
    found = {(r["scenario"], r["run"]): r.get(name) for r in runs if r["load"] == load}
    ratios = []
    for n in sorted({r["run"] for r in runs}):
        got = [found.get((s, n)) for s in ("memory", "tools", "seed", "seed-tools")]
        if all(isinstance(v, int | float) for v in got) and got[3] != got[2]:
            ratios.append((got[1] - got[0]) / (got[3] - got[2]))
    return _median(ratios)


def chatkit_table(rows: list[dict[str, Any]]) -> str:
    """ChatKit beside SSE: medians of each, and of ChatKit's ratio to SSE run by run."""
    lines = [
        "| load | runs | server CPU ms / 1k tokens sse / chatkit | × sse | token latency p50 "
        "sse / chatkit | × sse | p99 sse / chatkit | × sse | added TTFT p50 sse / chatkit "
        "| × sse | tokens / frame sse / chatkit | failed sse / chatkit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["load"], _fmt(row["runs"])]
        for name in ("cpu_server_ms_per_1k", "latency_p50_ms", "latency_p99_ms"):
            stats = row[name]
            cells += [f"{_fmt(stats['a'])} / {_fmt(stats['b'])}", _fmt(stats["ratio"])]
        stats = row["ttft_added_p50_ms"]
        cells += [f"{_fmt(stats['a'])} / {_fmt(stats['b'])}", _fmt(stats["ratio"])]
        stats = row["tokens_per_frame"]  # more per frame (an overloaded run): less CPU per token
        cells.append(f"{_fmt(stats['a'])} / {_fmt(stats['b'])}")
        cells.append(f"{row['failed']['sse']} / {row['failed']['chatkit']}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tools_table(rows: list[dict[str, Any]]) -> str:
    """Two rounds of tool calls: what they add to the Agents SDK alone (seed -> seed-tools)
    and to the product (memory -> tools), medians of the run-by-run differences."""
    lines = [
        "| load | who (plain -> with tools) | runs | server CPU ms / reply: plain / tools "
        "(+ extra) | TTFT p50 ms: plain / tools (+ extra) | tool turns p50 / p99 ms "
        "| token latency p99 ms plain / tools | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"sdk": "Agents SDK alone (seed -> seed-tools)", "product": "product (memory -> tools)"}
    for row in rows:
        for who in ("sdk", "product"):
            if who not in row:
                continue
            mine = row[who]
            cpu, ttft, p99 = (
                mine[n] for n in ("cpu_server_ms_per_reply", "ttft_p50_ms", "latency_p99_ms")
            )
            lines.append(
                f"| {row['load']} | {names[who]} | {mine['runs']} "
                f"| {_fmt(cpu['a'])} / {_fmt(cpu['b'])} (+{_fmt(cpu['extra'])}) "
                f"| {_fmt(ttft['a'])} / {_fmt(ttft['b'])} (+{_fmt(ttft['extra'])}) "
                f"| {_fmt(mine['tool_turns_p50_ms'])} / {_fmt(mine['tool_turns_p99_ms'])} "
                f"| {_fmt(p99['a'])} / {_fmt(p99['b'])} | {mine['failed']} |"
            )
        ratio = row.get("product_extra_x_sdk_extra")
        if ratio:
            by_run = row["product_extra_x_sdk_extra_by_run"]
            lines.append(
                f"| {row['load']} | product's extra ÷ the SDK's: of the medians (median of "
                f"the runs' ratios) | | × {_fmt(ratio['cpu_server_ms_per_reply'])} "
                f"({_fmt(by_run['cpu_server_ms_per_reply'])}) | × {_fmt(ratio['ttft_p50_ms'])} "
                f"({_fmt(by_run['ttft_p50_ms'])}) | | | |"
            )
    return "\n".join(lines)


def capacity_table(capacity: list[dict[str, Any]]) -> str:
    """Capacity per scenario, as a ratio to the seed's, and redis2's to one process's."""
    found = {c["scenario"]: c["capacity_tokens_per_s"] for c in capacity}
    lines = [
        "| scenario | capacity tokens/s (p99 < 100 ms) | × seed | × one process (redis) "
        "| streams | first failing step |",
        "|---|---|---|---|---|---|",
    ]
    for c in capacity:
        failing = next((s for s in c["steps"] if not s.get("passed")), None)
        fail = "–"
        if failing:
            fail = (
                f"{failing.get('streams')} streams: p99 {_fmt(failing.get('latency_p99_ms'))} "
                f"ms, {failing.get('failures', '–')} failed"
            )
        mine = c["capacity_tokens_per_s"]
        per_process = _ratio(mine, found.get("redis")) if c["scenario"] == "redis2" else None
        lines.append(
            f"| {c['scenario']} | {_fmt(mine)} | {_fmt(_ratio(mine, found.get('seed')))} "
            f"| {_fmt(per_process)} | {_fmt(c['capacity_streams'])} | {fail} |"
        )
    return "\n".join(lines)


def idle_table(idle: dict[str, Any]) -> str:
    """The idle-socket figures."""
    return "\n".join(
        [
            "| idle sockets | RSS before / after MiB | KiB per socket | reply p50 / p99 ms "
            "without | with | failed |",
            "|---|---|---|---|---|---|",
            f"| {_fmt(idle.get('sockets'))} | {_fmt(idle.get('rss_before_mb'))} / "
            f"{_fmt(idle.get('rss_after_mb'))} | {_fmt(idle.get('kib_per_socket'))} | "
            f"{_fmt(idle.get('latency_without_p50_ms'))} / "
            f"{_fmt(idle.get('latency_without_p99_ms'))} | "
            f"{_fmt(idle.get('latency_with_p50_ms'))} / {_fmt(idle.get('latency_with_p99_ms'))} "
            f"| {_fmt(idle.get('failures'))} |",
        ]
    )


# --- main ----------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="%(default)s")
    parser.add_argument(
        "--loads", default=DEFAULT_LOADS, help="streams x tokens/s each (%(default)s)"
    )
    parser.add_argument(
        "--side-loads",
        default=DEFAULT_SIDE_LOADS,
        help="the only loads of " + ", ".join(SIDE_SCENARIOS) + " (%(default)s; '': none)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each load (%(default)s)")
    parser.add_argument(
        "--no-capacity", dest="capacity", action="store_false", help="skip the capacity ramp"
    )
    parser.add_argument(
        "--ramp-rate", type=float, default=50, help="tokens/s per reply in the ramp (%(default)s)"
    )
    parser.add_argument(
        "--idle-sockets", type=int, default=5000, help="idle sockets on one process (0: skip)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds a run's replies may take"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=55,
        help="skip what is left after this long, and say so (%(default)s)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=TOKENS,
        help="tokens per reply (%(default)s); 1 makes a run all starts: its CPU per reply is "
        "a start's",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--workdir", type=Path, help="keep SQLite files and daphne logs in a folder made here"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy every server process of every run into this folder"
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown or "seed" not in args.scenarios:
        others = ", ".join(SCENARIOS[1:])
        parser.error(f"--scenarios: seed plus any of {others} (not {unknown})")
    args.scenarios.sort(key=SCENARIOS.index)
    try:
        args.loads = [Load.parse(text) for text in args.loads.split(",") if text.strip()]
        args.side_loads = [Load.parse(t) for t in args.side_loads.split(",") if t.strip()]
    except ValueError:
        parser.error("--loads, --side-loads: like 20x100,80x50")
    if not set(SIDE_SCENARIOS) & set(args.scenarios):
        args.side_loads = []
    args.current = ""
    return args


def _raise_fd_limit() -> int:
    """Open files up to the hard limit: thousands of sockets. daphne, started from this
    process, inherits the limit (no preexec_fn needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _workdir(path: Path | None) -> contextlib.AbstractContextManager[str]:
    if path is None:
        return tempfile.TemporaryDirectory(prefix="chat-scale-")
    # A folder of its own in it for each sitting: the stacks need fresh databases.
    path = path / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True)
    return contextlib.nullcontext(str(path.resolve()))


@contextlib.contextmanager
def _sitting(args: argparse.Namespace) -> Iterator[Sitting]:
    """Private Redis and PostgreSQL (if a scenario needs them), and each scenario's stack
    (the in-process one also for the idle sockets)."""
    with contextlib.ExitStack() as cleanup:
        sitting = Sitting(args, Path(cleanup.enter_context(_workdir(args.workdir))))
        if set(REDIS_SCENARIOS) & set(args.scenarios):
            sitting.redis = cleanup.enter_context(RedisInstance())
            sitting.postgres = cleanup.enter_context(PostgresInstance())
        stacks = [s for s in args.scenarios if s not in RELAYS]
        if args.idle_sockets and "memory" not in stacks:
            stacks.append("memory")
        for number, scenario in enumerate(stacks):
            redis_url = postgres_url = None
            if scenario in REDIS_SCENARIOS:
                assert sitting.redis is not None and sitting.postgres is not None
                # A Redis database of its own for each stack: one's keys never meet the other's.
                redis_url = sitting.redis.url.rsplit("/", 1)[0] + f"/{number}"
                postgres_url = sitting.postgres.url
            stack = ProductStack(
                stub_url="",  # set when a stub starts: Sitting.stub()
                workdir=sitting.workdir / scenario,
                redis_url=redis_url,
                postgres_url=postgres_url,
            )
            sitting.stacks[scenario] = cleanup.enter_context(stack)
            stack.env.update(PRODUCT_DEFAULTS)
            # Every load run's threads (and each process's warm-up thread), made now; the
            # HTTP paths make a thread for each reply.
            loads = [x for x in all_loads(args) if scenario in scenarios_at(args, x)]
            runs = args.runs if scenario in args.scenarios and scenario not in PATHS else 0
            needed = runs * sum(load.streams + 2 for load in loads)
            sitting.spare_threads[scenario] = _bulk_threads(stack, needed) if needed else []
        yield sitting


def main(argv: list[str] | None = None) -> int:
    """Run the sitting, print the tables, write the JSON; 1 if any reply failed a check."""
    global TOKENS
    args = _parse_args(argv)
    TOKENS = args.tokens
    fd_limit = _raise_fd_limit()
    machine = machine_info()
    print(
        f"scale bench: scenarios {args.scenarios}, loads {[x.name for x in args.loads]} "
        f"(side scenarios at {[x.name for x in args.side_loads]}), "
        f"{args.runs} run(s) each, {TOKENS} tokens of {TOKEN_CHARS} chars; capacity ramp "
        f"{'on' if args.capacity else 'off'}; {args.idle_sockets} idle sockets",
        flush=True,
    )
    if machine["loadavg_before"][0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {machine['loadavg_before'][0]:.1f}: figures will be noisy")
    result: dict[str, Any] = {}
    with _sitting(args) as sitting:
        runs = run_loads(sitting)
        capacity = []
        if args.capacity and not sitting.out_of_time("capacity ramp"):
            with sitting.stub(args.ramp_rate) as stub:
                main = [s for s in args.scenarios if s in MAIN_SCENARIOS]
                capacity = [ramp(sitting, scenario, stub) for scenario in main]
        idle = None
        if args.idle_sockets and not sitting.out_of_time("idle sockets"):
            print(f"{sitting.clock()} {args.idle_sockets} idle sockets on one process", flush=True)
            with sitting.stub(IDLE_RATE) as stub:
                idle = idle_sockets(sitting, stub)
            print(f"{sitting.clock()} idle sockets: {idle}", flush=True)
    summaries = []
    for load in all_loads(args):
        seed = None
        for scenario in scenarios_at(args, load):
            mine = [r for r in runs if r["scenario"] == scenario and r["load"] == load.name]
            summary = aggregate(mine, seed)
            summary.update(
                scenario=scenario, load=load.name, failed_total=sum(r["failures"] for r in mine)
            )
            summaries.append(summary)
            if scenario == "seed":
                seed = summary
    print()
    print(table(summaries))
    side = side_comparisons(runs)
    if side["chatkit_sse"]:
        print()
        print(chatkit_table(side["chatkit_sse"]))
    if side["tools"]:
        print()
        print(tools_table(side["tools"]))
    if capacity:
        print()
        print(capacity_table(capacity))
    if idle:
        print()
        print(idle_table(idle))
    result.update(
        machine={**machine, "loadavg_after": os.getloadavg()},
        settings={
            "scenarios": args.scenarios,
            "loads": [x.name for x in args.loads],
            "side_loads": [x.name for x in args.side_loads],
            "tool_rounds": [expression for expression, _ in TOOL_ROUNDS],
            "runs": args.runs,
            "tokens_per_reply": TOKENS,
            "token_chars": TOKEN_CHARS,
            "product_env": PRODUCT_DEFAULTS,
            "ramp_rate": args.ramp_rate,
            "latency_bound_ms": LATENCY_BOUND_MS,
            "open_files_limit": fd_limit,
        },
        skipped=sitting.skipped,
        summaries=summaries,
        side=side,
        capacity=capacity,
        idle_sockets=idle,
        runs=runs,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.output}")
    # The ramp's last step fails by design: only the loads and the idle test count here.
    failed = sum(r["failures"] for r in runs)
    if idle:
        failed += idle.get("failures", 0)
    if sitting.skipped:
        print(
            f"out of time (--max-minutes): {len(sitting.skipped)} skipped, from "
            f"{sitting.skipped[0]}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
