"""Streaming benchmark: the product's WebSocket stream next to the provider's own stream.

    .venv/bin/python -m bench.streaming [--streams 1,10,100,500 | --quick]

For each N, one run of N concurrent replies in each scenario, side by side in one process:

- ``baseline``: the stub provider's stream read directly with the ``openai`` SDK;
- ``memory``: one daphne process, in-process channel layer, SQLite (the laptop stack);
- ``redis``: one daphne process, channels-redis and PostgreSQL (the production stack).

The stub runs in its own process with ``--timestamp-tokens``: each token carries the time it
was sent, so the latency of a frame is its receive time minus the emission time of the first
token it contains. Results are printed as a table and written to ``var/bench-streaming.json``.
docs/performance.md explains the method and reports a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from websockets.asyncio.client import ClientConnection, connect

from bench.stack import (
    BENCH_PASSWORD,
    BENCH_USER,
    ROOT,
    ProductStack,
    StubProcess,
    cpu_seconds,
    memory_mb,
    redis_cpu_seconds,
    wait_idle,
)
from chat.stub_provider import timestamp_tokens_times_ns
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


@dataclass
class Stream:
    """What one client saw of one reply."""

    ttft_ms: float | None = None
    latency_ms: list[float] = field(default_factory=list)  # one per frame (baseline: chunk)
    last_ms: list[float] = field(default_factory=list)  # the same, of the frame's last token
    server_ms: list[float] = field(default_factory=list)  # product: emission -> frame `ts`
    frames: int = 0
    tokens: int = 0
    finished_at: float = 0.0  # time.monotonic()
    error: str = ""

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


# --- baseline: the provider's own stream through the openai SDK ----------------------------


async def _baseline_stream(
    client: openai.AsyncOpenAI, gate: asyncio.Event, deadline: float, expected: int
) -> Stream:
    stream = Stream()
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
        stream.error = f"{type(exc).__name__}: {exc}"[:200]
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
        await _baseline_stream(client, warm, time.monotonic() + 30, expected)
        gate = asyncio.Event()
        deadline = time.monotonic() + timeout
        tasks = [
            asyncio.create_task(_baseline_stream(client, gate, deadline, expected))
            for _ in range(streams)
        ]
        await asyncio.sleep(0)  # let every task reach the gate, so they start together
        meter.begin()
        started = time.monotonic()
        gate.set()
        results = await asyncio.gather(*tasks)
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


async def _product_stream(
    ws: ClientConnection, gate: asyncio.Event, deadline: float, expected: int
) -> Stream:
    stream = Stream()
    await gate.wait()
    sent_ns = time.time_ns()
    try:
        async with asyncio.timeout_at(deadline):
            command = {"command": "start", "message": PROMPT, "client_id": str(uuid.uuid4())}
            await ws.send(json.dumps(command))
            seq = -1
            while True:
                # A reply silent this long has stalled: fail it now rather than at the deadline.
                raw = await asyncio.wait_for(ws.recv(), IDLE_TIMEOUT)
                received_ns = time.time_ns()
                frame = json.loads(raw)
                kind = frame["type"]
                if "message_id" not in frame:
                    # Not a frame of the reply: our own persisted `message`, a `thread` title.
                    if kind == "error":
                        raise RuntimeError(f"error frame {frame['code']}: {frame['message']}")
                    continue
                if frame.get("seq") != seq + 1:
                    # A real client would resync; for the benchmark a gap is a failure.
                    raise RuntimeError(f"seq gap: {seq} then {frame.get('seq')} ({kind})")
                seq = frame["seq"]
                if kind == "token":
                    emitted_ns = stream.add(frame["token"], received_ns, sent_ns)
                    stream.server_ms.append(frame["ts"] - emitted_ns / 1e6)
                elif kind in ("complete", "error"):
                    if frame.get("status") != "complete":
                        raise RuntimeError(f"reply ended {frame.get('status') or frame['code']}")
                    break
        if stream.tokens != expected:
            stream.error = f"{stream.tokens} of {expected} tokens"
    except Exception as exc:  # counted and reported, never hidden
        stream.error = f"{type(exc).__name__}: {exc}"[:200]
    stream.finished_at = time.monotonic()
    return stream


async def _connect_all(server: Daphne, cookie: str, thread_ids: list[str]) -> list[Any]:
    """One socket per thread, or the exception that prevented it."""
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(thread_id: str) -> ClientConnection:
        async with limit:
            return await _open(server, cookie, thread_id)

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
    ws = await _open(server, cookie, warm_up)
    warm = asyncio.Event()
    warm.set()
    first = await _product_stream(ws, warm, time.monotonic() + 30, expected)
    await ws.close()
    if first.error:
        raise RuntimeError(f"the warm-up reply failed: {first.error}")

    sockets = await _connect_all(server, cookie, measured)
    try:
        gate = asyncio.Event()
        deadline = time.monotonic() + timeout
        tasks: list[asyncio.Future[Stream]] = []
        for ws in sockets:
            if isinstance(ws, BaseException):
                failed = asyncio.get_running_loop().create_future()
                failed.set_result(Stream(error=f"connect: {type(ws).__name__}: {ws}"[:200]))
                tasks.append(failed)
            else:
                tasks.append(asyncio.create_task(_product_stream(ws, gate, deadline, expected)))
        await asyncio.sleep(0)
        meter.begin()
        started = time.monotonic()
        gate.set()
        results = list(await asyncio.gather(*tasks))
        meter.end()
    finally:
        open_sockets = [ws for ws in sockets if not isinstance(ws, BaseException)]
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for ws in open_sockets), return_exceptions=True), 30
        )
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
    latency = [v for s in ok for v in s.latency_ms]
    ttft = [s.ttft_ms for s in ok if s.ttft_ms is not None]
    tokens = sum(s.tokens for s in run.results)
    frames = sum(s.frames for s in ok)
    # The process that does the delivering: daphne for the product, the SDK client otherwise.
    worker = "client" if run.scenario == "baseline" else "daphne"
    summary: dict[str, Any] = {
        "scenario": run.scenario,
        "streams": run.streams,
        "replies_complete": len(ok),
        "errors": len(run.results) - len(ok),
        "error_samples": sorted({s.error for s in run.results if s.error})[:3],
        "frame_latency_ms": {f"p{q}": percentile(latency, q) for q in (50, 95, 99, 100)},
        "last_token_latency_ms": {
            f"p{q}": percentile([v for s in ok for v in s.last_ms], q) for q in (50, 99)
        },
        "ttft_ms": {f"p{q}": percentile(ttft, q) for q in (50, 95)},
        "frames_per_reply": round(frames / len(ok), 1) if ok else None,
        "tokens_per_frame": round(sum(s.tokens for s in ok) / frames, 2) if frames else None,
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
        server = [v for s in ok for v in s.server_ms]
        # Split of the frame latency: provider -> frame built in daphne (its `ts`, 1 ms
        # resolution), and frame built -> client (live store, channel layer, socket, client).
        summary["provider_to_frame_ms"] = {f"p{q}": percentile(server, q) for q in (50, 99)}
        to_client = [a - b for s in ok for a, b in zip(s.latency_ms, s.server_ms, strict=True)]
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
            s["errors"],
        )
        lines.append(" ".join(_cell(v).rjust(w) for v, (_, w) in zip(row, _COLUMNS, strict=True)))
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    # The product's files changed since the commit, if any: the figures are of those too.
    dirty = [line[3:] for line in git("status", "--porcelain", "chat", "chatproject").splitlines()]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted": dirty,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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
        "--timeout", type=float, default=120, help="seconds one run of N streams may take"
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
        f"p50 {s['frame_latency_ms']['p50']} ms  errors {s['errors']}",
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
        "machine": _machine(),
        "settings": {
            "streams": args.streams,
            "scenarios": args.scenarios,
            "tokens_per_reply": args.tokens,
            "delay_ms": args.delay_ms,
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
