"""Streaming benchmark: the product's WebSocket stream next to the provider's own stream.

    .venv/bin/python -m bench.streaming [--streams 1,10,100,500 | --quick]

For each N, one run of N concurrent replies in each scenario, side by side in one run:

- ``baseline``: the stub provider's stream read directly with the ``openai`` SDK;
- ``memory``: one daphne process, in-process channel layer, SQLite (the laptop stack);
- ``redis``: one daphne process, channels-redis and PostgreSQL (the production stack).

The stub runs in its own process with ``--timestamp-tokens``: each token carries the time it
was sent, so the latency of a frame is its receive time minus the emission time of the first
token it contains. The clients behave as the page does: a gap in `seq` is answered by a
`resync`, and a reply that ended meanwhile is read back from the API; such recoveries are
counted, and a reply that does not complete with all its tokens is an error. Results are
printed as a table and written to ``var/bench-streaming.json``; docs/performance.md explains
the method and reports a run. Exit status 1 when any reply failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
from websockets.asyncio.client import ClientConnection, connect

from bench.stack import (
    BENCH_PASSWORD,
    BENCH_USER,
    ROOT,
    ProductStack,
    StubProcess,
    cpu_seconds,
    machine_info,
    memory_mb,
    redis_cpu_seconds,
    wait_idle,
)
from scripts.stub_provider import TIMESTAMP_WIDTH, timestamp_tokens_times_ns
from tests.servers import Daphne, cookie_header, login

SCENARIOS = ("baseline", "memory", "redis")
FULL_STREAMS = (1, 10, 100, 500)
QUICK_STREAMS = (1, 10, 100)
REDIS_URL = "redis://127.0.0.1:6379/14"
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
OUTPUT = ROOT / "var" / "bench-streaming.json"
# Handshakes are opened this many at a time: a burst of 500 measures the accept queue,
# which is not what this benchmark is about.
CONNECT_CONCURRENCY = 32
PROMPT = "Benchmark: please stream your answer."
IDLE_TIMEOUT = 30.0
# Product settings worth varying from the environment (daphne inherits it): recorded.
PRODUCT_KNOBS = ("BUFFER_SIZE", "FLUSH_INTERVAL_MS", "CHECKPOINT_SECONDS", "STREAM_TIMEOUT")


@dataclass
class Stream:
    """What one client saw of one reply."""

    ttft_ms: float | None = None
    latency_ms: list[float] = field(default_factory=list)  # one per frame (baseline: chunk)
    last_ms: list[float] = field(default_factory=list)  # the same, of the frame's last token
    server_ms: list[float] = field(default_factory=list)  # product: emission -> frame `ts`
    frames: int = 0
    tokens: int = 0  # carried by frames (chunks)
    recovered: int = 0  # product: tokens whose frames were lost, got back through a resync
    resyncs: int = 0
    fetched: bool = False  # product: the reply's end was read from the API after a resync
    reply_frames: int = 0  # product: token frames daphne sent for the reply (from the seqs)
    finished_at: float = 0.0  # time.monotonic()
    error: str = ""

    @property
    def delivered(self) -> int:
        """Tokens the client ended up with."""
        return self.tokens + self.recovered

    def add(self, text: str, received_ns: int, sent_ns: int) -> int:
        """Account for a frame (or chunk) of timestamp tokens; return its first's emission."""
        emitted = timestamp_tokens_times_ns(text, received_ns)
        if self.ttft_ms is None:
            self.ttft_ms = (received_ns - sent_ns) / 1e6
        self.latency_ms.append((received_ns - emitted[0]) / 1e6)
        # The last token's trip leaves out the time the first one waited to be coalesced.
        self.last_ms.append((received_ns - emitted[-1]) / 1e6)
        self.frames += 1
        self.tokens += len(emitted)
        return emitted[0]


@dataclass
class Run:
    """One scenario at one N: every stream, and what the processes spent."""

    scenario: str
    streams: int
    results: list[Stream]
    duration_s: float
    cpu_s: dict[str, float]
    rss_mb: dict[str, float] = field(default_factory=dict)


class CpuMeter:
    """CPU seconds spent by each process between ``begin()`` and ``end()``."""

    def __init__(self, pids: dict[str, int], redis_url: str | None = None) -> None:
        self.pids, self.redis_url = pids, redis_url
        self._start: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.redis_url:
            now["redis"] = redis_cpu_seconds(self.redis_url)
        return now

    def begin(self) -> None:
        """Take the starting figures."""
        self._start = self._read()

    def end(self) -> None:
        """Take the final figures; ``spent`` holds the differences."""
        now = self._read()
        self.spent = {name: round(now[name] - self._start[name], 3) for name in now}


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout: no frame for {IDLE_TIMEOUT:g} s, or past the run's deadline"
    return f"{type(exc).__name__}: {exc}"[:200]


# --- baseline: the provider's own stream through the openai SDK ----------------------------


async def _baseline_stream(
    client: openai.AsyncOpenAI, gate: asyncio.Event, deadline: float, expected: int, stream: Stream
) -> Stream:
    await gate.wait()
    sent_ns = time.time_ns()
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.chat.completions.create(
                model="stub-model",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
            async with response:
                async for chunk in response:
                    received_ns = time.time_ns()
                    if chunk.choices and chunk.choices[0].delta.content:
                        stream.add(chunk.choices[0].delta.content, received_ns, sent_ns)
        if stream.tokens != expected:
            stream.error = f"{stream.tokens} of {expected} tokens"
    except Exception as exc:  # counted and reported, never hidden
        stream.error = _describe(exc)
    stream.finished_at = time.monotonic()
    return stream


async def _baseline(
    stub_url: str, streams: int, expected: int, timeout: float, meter: CpuMeter
) -> tuple[list[Stream], float]:
    client = openai.AsyncOpenAI(base_url=stub_url, api_key="x", max_retries=0, timeout=timeout)
    async with client:
        # A warm-up reply, not measured: imports, the first connection, the SDK's caches.
        warm = asyncio.Event()
        warm.set()
        await _baseline_stream(client, warm, time.monotonic() + 30, expected, Stream())
        gate = asyncio.Event()
        deadline = time.monotonic() + timeout
        results = [Stream() for _ in range(streams)]
        tasks = [
            asyncio.create_task(_baseline_stream(client, gate, deadline, expected, stream))
            for stream in results
        ]
        await asyncio.sleep(0)  # let every task reach the gate, so they start together
        meter.begin()
        started = time.monotonic()
        gate.set()
        await _gather_or_abort(tasks, results)
        meter.end()
    return results, max(s.finished_at for s in results) - started


# --- the product: WebSocket clients on daphne ----------------------------------------------


async def _open(server: Daphne, cookie: str, thread_id: str) -> ClientConnection:
    """A thread's socket as a browser opens it (same Origin, session cookie), past `ready`."""
    ws = await connect(
        f"{server.ws_url}/ws/threads/{thread_id}/",
        origin=server.url,
        additional_headers={"Cookie": cookie},
        open_timeout=30,
        close_timeout=5,
        ping_interval=None,  # like a browser: daphne pings, the client only answers
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if ready.get("type") != "ready" or ready.get("active") is not None:
        await ws.close()
        raise RuntimeError(f"unexpected first frame {ready!r}")
    return ws


@dataclass
class ThreadSocket:
    """A client's WebSocket on one thread, and its HTTP client for the thread's messages."""

    ws: ClientConnection
    thread_id: str
    http: httpx.AsyncClient

    async def saved(self, message_id: str) -> dict[str, Any] | None:
        """The message as the API returns it, as a page that lost the end of a reply asks."""
        answer = await self.http.get(f"/api/threads/{self.thread_id}/messages/")
        answer.raise_for_status()
        return next((m for m in answer.json()["results"] if m["id"] == message_id), None)


async def _product_stream(
    sock: ThreadSocket, gate: asyncio.Event, deadline: float, expected: int, stream: Stream
) -> Stream:
    """Send `start` and read the reply's frames until its end, as the page's client does."""
    await gate.wait()
    sent_ns = time.time_ns()
    seq, resyncing, terminal, message_id = -1, False, None, ""
    try:
        async with asyncio.timeout_at(deadline):
            command = {"command": "start", "message": PROMPT, "client_id": str(uuid.uuid4())}
            await sock.ws.send(json.dumps(command))
            while terminal is None or resyncing:
                # A reply silent this long has stalled: fail it now rather than at the deadline.
                raw = await asyncio.wait_for(sock.ws.recv(), IDLE_TIMEOUT)
                received_ns = time.time_ns()
                frame = json.loads(raw)
                kind = frame["type"]
                if kind == "ready" and resyncing:
                    resyncing = False
                    if frame["active"] is not None:
                        seq = frame["active"]["seq"]
                        content = frame["active"]["content"]
                    else:
                        # The reply ended meanwhile, and frames before its end are lost or
                        # still queued: the saved message is the record, as for the page.
                        saved = await sock.saved(message_id) or {"status": "missing"}
                        content = saved.get("content", "")
                        terminal = terminal or {"status": saved["status"]}
                        stream.fetched = True
                    stream.recovered = len(content) // TIMESTAMP_WIDTH - stream.tokens
                    continue
                if "message_id" not in frame:
                    # Not a frame of the reply: our own persisted `message`, a `thread` title.
                    if kind == "error":
                        raise RuntimeError(f"error frame {frame['code']}: {frame['message']}")
                    continue
                message_id = frame["message_id"]
                if kind in ("complete", "error"):
                    terminal = frame
                    if not resyncing and frame["seq"] != seq + 1:
                        resyncing = await _resync(sock.ws, stream)
                elif resyncing:
                    pass  # sent before the snapshot that `ready` will bring: covered by it
                elif frame["seq"] != seq + 1:
                    # A gap: frames were lost on the way; the protocol's answer is a resync.
                    resyncing = await _resync(sock.ws, stream)
                else:
                    seq = frame["seq"]
                    if kind == "token":
                        emitted_ns = stream.add(frame["token"], received_ns, sent_ns)
                        stream.server_ms.append(frame["ts"] - emitted_ns / 1e6)
        if isinstance(terminal.get("seq"), int):
            stream.reply_frames = terminal["seq"] - 1  # seq 0 is `start`
        if terminal.get("status") != "complete":
            raise RuntimeError(f"reply ended {terminal.get('status') or terminal.get('code')}")
        if stream.delivered != expected:
            stream.error = f"{stream.delivered} of {expected} tokens"
    except TimeoutError:
        # Where the reply stood, for telling a slow stack from frames lost for good.
        saved = await _saved_status(sock, message_id)
        stream.error = f"{_describe(TimeoutError())} (last seq {seq}; saved reply {saved})"
    except Exception as exc:  # counted and reported, never hidden
        stream.error = _describe(exc)
    stream.finished_at = time.monotonic()
    return stream


async def _saved_status(sock: ThreadSocket, message_id: str) -> str:
    if not message_id:
        return "unknown"
    try:
        async with asyncio.timeout(10):
            saved = await sock.saved(message_id)
    except Exception:
        return "unknown"
    return saved["status"] if saved else "missing"


async def _resync(ws: ClientConnection, stream: Stream) -> bool:
    """Ask for the reply's snapshot after a gap; True, the client's new `resyncing` state."""
    stream.resyncs += 1
    await ws.send(json.dumps({"command": "resync"}))
    return True


async def _gather_or_abort(tasks: list[asyncio.Task[Stream]], streams: list[Stream]) -> None:
    """Wait for every stream; once most have failed, cancel the rest and mark them failed.

    A run where most replies already failed measures nothing more by going on, and a broken
    stack would otherwise hold the whole benchmark until the deadline.
    """
    pending: set[asyncio.Task[Stream]] = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        failed = sum(1 for s in streams if s.error)
        if pending and failed * 2 > len(streams):
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            for stream in streams:
                if not stream.finished_at:
                    stream.error = f"aborted: {failed} of {len(streams)} replies had failed"
                    stream.finished_at = time.monotonic()
            return


async def _connect_all(
    server: Daphne, cookie: str, thread_ids: list[str], http: httpx.AsyncClient
) -> list[ThreadSocket | BaseException]:
    """One socket per thread, or the exception that prevented it."""
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(thread_id: str) -> ThreadSocket:
        async with limit:
            return ThreadSocket(await _open(server, cookie, thread_id), thread_id, http)

    return await asyncio.gather(*(one(t) for t in thread_ids), return_exceptions=True)


async def _product(
    server: Daphne,
    cookie: str,
    thread_ids: list[str],
    expected: int,
    timeout: float,
    meter: CpuMeter,
) -> tuple[list[Stream], float]:
    # The first thread is the warm-up reply, not measured: it loads the agent, the openai
    # client and the database connection code, which every later reply shares.
    warm_up, *measured = thread_ids
    http = httpx.AsyncClient(base_url=server.url, headers={"Cookie": cookie}, timeout=30)
    async with http:
        sock = ThreadSocket(await _open(server, cookie, warm_up), warm_up, http)
        warm = asyncio.Event()
        warm.set()
        first = await _product_stream(sock, warm, time.monotonic() + 30, expected, Stream())
        await sock.ws.close()
        if first.error:
            raise RuntimeError(f"the warm-up reply failed: {first.error}")
        sockets = await _connect_all(server, cookie, measured, http)
        return await _product_streams(sockets, expected, timeout, meter)


async def _product_streams(
    sockets: list[ThreadSocket | BaseException], expected: int, timeout: float, meter: CpuMeter
) -> tuple[list[Stream], float]:
    """All the replies at once, measured; every socket is closed after."""
    try:
        gate = asyncio.Event()
        deadline = time.monotonic() + timeout
        results = [Stream() for _ in sockets]
        tasks = []
        for sock, stream in zip(sockets, results, strict=True):
            if isinstance(sock, BaseException):
                stream.error = f"connect: {type(sock).__name__}: {sock}"[:200]
                stream.finished_at = time.monotonic()
            else:
                task = _product_stream(sock, gate, deadline, expected, stream)
                tasks.append(asyncio.create_task(task))
        await asyncio.sleep(0)
        meter.begin()
        started = time.monotonic()
        gate.set()
        await _gather_or_abort(tasks, results)
        meter.end()
    finally:
        # Bounded: a socket that will not close in time is dropped with the event loop.
        closing = [
            asyncio.create_task(sock.ws.close())
            for sock in sockets
            if isinstance(sock, ThreadSocket)
        ]
        if closing:
            await asyncio.wait(closing, timeout=30)
    ended = [s.finished_at for s in results if s.finished_at]
    return results, (max(ended) - started) if ended else 0.0


def run_product(
    scenario: str,
    stack: ProductStack,
    stub: StubProcess,
    streams: int,
    args: argparse.Namespace,
) -> Run:
    """N concurrent replies through a fresh daphne process of the stack."""
    with stack.daphne() as server:
        pid = server.process.pid
        client = login(server.url, BENCH_USER, BENCH_PASSWORD)
        with contextlib.closing(client):
            thread_ids = []
            for _ in range(streams + 1):  # one more for the warm-up reply
                answer = client.post("/api/threads/", json={})
                answer.raise_for_status()
                thread_ids.append(answer.json()["id"])
            cookie = cookie_header(client)
        wait_idle(pid)
        pids = {"daphne": pid, "client": os.getpid(), "stub": stub.pid}
        meter = CpuMeter(pids, stack.redis_url)
        rss_idle = memory_mb(pid, "VmRSS")
        results, duration = asyncio.run(
            _product(server, cookie, thread_ids, args.tokens, args.timeout, meter)
        )
        rss = {"idle": round(rss_idle, 1), "peak": round(memory_mb(pid, "VmHWM"), 1)}
    return Run(scenario, streams, results, duration, meter.spent, rss)


def run_baseline(stub: StubProcess, streams: int, args: argparse.Namespace) -> Run:
    """N concurrent streams read straight from the stub with the openai SDK."""
    meter = CpuMeter({"client": os.getpid(), "stub": stub.pid})
    results, duration = asyncio.run(_baseline(stub.url, streams, args.tokens, args.timeout, meter))
    return Run("baseline", streams, results, duration, meter.spent)


# --- figures -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank], 2)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarize(run: Run, baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The figures of one run; ``baseline`` (the same N's summary) adds the ratios."""
    ok = [s for s in run.results if not s.error]
    # Every frame that arrived counts, also from replies that failed later: with failures
    # the percentiles are lower bounds (the frames that never came are not in them).
    latency = [v for s in run.results for v in s.latency_ms]
    ttft = [s.ttft_ms for s in run.results if s.ttft_ms is not None]
    tokens = sum(s.delivered for s in run.results)
    # Frames sent per reply: the product's are counted from the seqs (frames lost on the way
    # still count), so only replies whose terminal frame arrived tell.
    counted = [s for s in ok if s.reply_frames] if run.scenario != "baseline" else ok
    frames = sum(s.reply_frames or s.frames for s in counted)
    # The process that does the delivering: daphne for the product, the SDK client otherwise.
    worker = "client" if run.scenario == "baseline" else "daphne"
    summary: dict[str, Any] = {
        "scenario": run.scenario,
        "streams": run.streams,
        "replies_complete": len(ok),
        "errors": len(run.results) - len(ok),
        # Gaps in `seq` (frames lost between daphne and the client), each answered by a resync.
        "resyncs": sum(s.resyncs for s in run.results),
        "fetched_from_api": sum(s.fetched for s in run.results),
        "error_samples": sorted({s.error for s in run.results if s.error})[:3],
        "frame_latency_ms": {f"p{q}": percentile(latency, q) for q in (50, 95, 99, 100)},
        "last_token_latency_ms": {
            f"p{q}": percentile([v for s in run.results for v in s.last_ms], q) for q in (50, 99)
        },
        "ttft_ms": {f"p{q}": percentile(ttft, q) for q in (50, 95)},
        "frames_per_reply": round(frames / len(counted), 1) if counted else None,
        "tokens_per_frame": (
            round(sum(s.delivered for s in counted) / frames, 2) if frames else None
        ),
        "tokens_delivered": tokens,
        "duration_s": round(run.duration_s, 2),
        "tokens_per_s": round(tokens / run.duration_s) if run.duration_s else None,
        "cpu_s": run.cpu_s,
        "cpu_s_per_1k_tokens": {
            name: round(spent / tokens * 1000, 4) if tokens else None
            for name, spent in run.cpu_s.items()
        },
        "worker": worker,
    }
    if run.scenario != "baseline":
        server = [v for s in run.results for v in s.server_ms]
        # Split of the frame latency: provider -> frame built in daphne (its `ts`, 1 ms
        # resolution), and frame built -> client (live store, channel layer, socket, client).
        summary["provider_to_frame_ms"] = {f"p{q}": percentile(server, q) for q in (50, 99)}
        to_client = [
            a - b for s in run.results for a, b in zip(s.latency_ms, s.server_ms, strict=True)
        ]
        summary["frame_to_client_ms"] = {f"p{q}": percentile(to_client, q) for q in (50, 99)}
        summary["rss_mb"] = run.rss_mb
    if baseline is not None:
        mine, theirs = summary["frame_latency_ms"], baseline["frame_latency_ms"]
        summary["vs_baseline"] = {
            "frame_latency": {q: _ratio(mine[q], theirs[q]) for q in ("p50", "p95", "p99")},
            "ttft": {
                q: _ratio(summary["ttft_ms"][q], baseline["ttft_ms"][q]) for q in ("p50", "p95")
            },
            "cpu_per_token": _ratio(
                summary["cpu_s_per_1k_tokens"].get(worker),
                baseline["cpu_s_per_1k_tokens"].get("client"),
            ),
        }
    return summary


_COLUMNS = (
    ("scenario", 8),
    ("N", 4),
    ("lat p50", 8),
    ("p95", 7),
    ("p99", 7),
    ("x p50", 6),
    ("x p99", 6),
    ("ttft p50", 8),
    ("p95", 7),
    ("x p50", 6),
    ("cpu/1k", 7),
    ("x cpu", 6),
    ("fr/rep", 6),
    ("tok/fr", 6),
    ("tok/s", 6),
    ("RSS", 6),
    ("resync", 6),
    ("err", 4),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return str(value)


def table(summaries: list[dict[str, Any]]) -> str:
    """The compact table: latencies in ms, ``x`` columns are product / baseline at that N."""
    lines = [" ".join(name.rjust(width) for name, width in _COLUMNS)]
    for s in summaries:
        ratios = s.get("vs_baseline", {})
        row = (
            s["scenario"],
            s["streams"],
            s["frame_latency_ms"]["p50"],
            s["frame_latency_ms"]["p95"],
            s["frame_latency_ms"]["p99"],
            ratios.get("frame_latency", {}).get("p50"),
            ratios.get("frame_latency", {}).get("p99"),
            s["ttft_ms"]["p50"],
            s["ttft_ms"]["p95"],
            ratios.get("ttft", {}).get("p50"),
            s["cpu_s_per_1k_tokens"].get(s["worker"]),
            ratios.get("cpu_per_token"),
            s["frames_per_reply"],
            s["tokens_per_frame"],
            s["tokens_per_s"],
            s.get("rss_mb", {}).get("peak"),
            s["resyncs"],
            s["errors"],
        )
        lines.append(" ".join(_cell(v).rjust(w) for v, (_, w) in zip(row, _COLUMNS, strict=True)))
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__)
    parser.add_argument(
        "--streams",
        default=",".join(map(str, FULL_STREAMS)),
        help="comma-separated numbers of concurrent streams (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"only N in {QUICK_STREAMS} (overrides --streams)"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="%(default)s")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per reply")
    parser.add_argument("--delay-ms", type=float, default=5, help="stub delay between tokens")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60,
        help="seconds a run's replies may take before they count as failed (%(default)s)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep SQLite files and daphne logs here (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    args.streams = list(QUICK_STREAMS) if args.quick else [int(n) for n in args.streams.split(",")]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown or "baseline" not in args.scenarios:
        parser.error(f"--scenarios: baseline plus any of memory, redis (not {sorted(unknown)})")
    return args


@contextlib.contextmanager
def _stacks(args: argparse.Namespace, stub_url: str, workdir: Path) -> Iterator[dict]:
    """Every product stack the run needs, torn down (database dropped, Redis flushed) after."""
    with contextlib.ExitStack() as stack:
        stacks: dict[str, ProductStack] = {}
        if "memory" in args.scenarios:
            stacks["memory"] = stack.enter_context(
                ProductStack(stub_url=stub_url, workdir=workdir / "memory")
            )
        if "redis" in args.scenarios:
            stacks["redis"] = stack.enter_context(
                ProductStack(
                    stub_url=stub_url,
                    workdir=workdir / "redis",
                    redis_url=args.redis_url,
                    postgres_url=args.postgres_url,
                )
            )
        yield stacks


def _workdir(path: Path | None) -> contextlib.AbstractContextManager[str]:
    if path is None:
        return tempfile.TemporaryDirectory(prefix="chat-bench-")
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path.resolve()))


def _progress(s: dict[str, Any]) -> None:
    print(
        f"  {s['scenario']:8} N={s['streams']:<4} {s['duration_s']:6.1f} s  "
        f"p50 {s['frame_latency_ms']['p50']} ms  resyncs {s['resyncs']}  errors {s['errors']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every scenario at every N, print the table, write the JSON; 1 if any reply failed."""
    args = _parse_args(argv)
    print(
        f"streaming bench: N={args.streams}, scenarios={args.scenarios}, "
        f"{args.tokens} tokens x {args.delay_ms:g} ms per reply",
        flush=True,
    )
    machine = machine_info()
    if machine["loadavg_before"][0] > 0.5 * (os.cpu_count() or 1):
        # Other work on the machine competes with the three processes measured here.
        print(f"warning: load average {machine['loadavg_before'][0]:.1f}: figures will be noisy")
    summaries: list[dict[str, Any]] = []
    with (
        _workdir(args.workdir) as tmp,
        StubProcess(tokens=args.tokens, delay_ms=args.delay_ms) as stub,
        _stacks(args, stub.url, Path(tmp)) as stacks,
    ):
        # Interleaved by N, so each N's scenarios run under the same conditions.
        for streams in args.streams:
            baseline = summarize(run_baseline(stub, streams, args), None)
            summaries.append(baseline)
            _progress(baseline)
            for scenario, stack in stacks.items():
                run = run_product(scenario, stack, stub, streams, args)
                summaries.append(summarize(run, baseline))
                _progress(summaries[-1])

    order = {name: i for i, name in enumerate(SCENARIOS)}
    summaries.sort(key=lambda s: (order[s["scenario"]], s["streams"]))
    print()
    print(table(summaries))
    print(
        "\nlatency: receive time - emission of the frame's first token, ms; ttft: ms from the "
        "request; cpu/1k: CPU s per 1,000 tokens of daphne (baseline: SDK client); "
        "x: product / baseline at the same N; RSS: daphne peak, MiB"
    )
    result = {
        "machine": {**machine, "loadavg_after": os.getloadavg()},
        "settings": {
            "streams": args.streams,
            "scenarios": args.scenarios,
            "tokens_per_reply": args.tokens,
            "delay_ms": args.delay_ms,
            # The coalescer's settings, passed to daphne from this environment when set.
            "product_env": {name: os.environ.get(name) for name in PRODUCT_KNOBS},
            "redis_url": args.redis_url if "redis" in args.scenarios else None,
        },
        "results": summaries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")
    failed = sum(s["errors"] for s in summaries)
    if failed:
        print(f"{failed} replies failed or were incomplete: see error_samples in the JSON")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
