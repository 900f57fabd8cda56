"""ChatKit benchmark: the same replies through the provider, the product's SSE and ChatKit.

    .venv/bin/python -m bench.chatkit [--streams 1,10,50] [--tokens 200] [--delay-ms 10]

For each N, N concurrent replies on each of three paths, side by side in one run:

- ``provider``: the stub provider's stream read directly with the ``openai`` SDK;
- ``sse``: ``POST /api/stream/message`` (the product's own SSE frames);
- ``chatkit``: ``POST /api/chatkit`` with a ``threads.create`` request built with the
  ``openai-chatkit`` package's types, read as ChatKit events until the response ends.

The requests and their event readers are bench/http_paths.py's, shared with bench.scale's
``sse`` and ``chatkit`` scenarios.

Both product paths run on the same daphne process (laptop stack: SQLite, in-process layer;
one fresh process per N), ``sse`` first, then ``chatkit``, each after daphne is idle and after
one unmeasured warm-up reply. The N replies of a run wait behind a gate and start together.
The stub runs in its own process with ``--timestamp-tokens``: each token carries the time it
was sent, so a chunk's latency is its receive time minus the emission of its first token
(bench/streaming.py's ``Stream.add``); TTFT is from sending the request to the first text. A
reply is ok only if every token the stub sent arrived. CPU is daphne's for the product paths
and the SDK client's (this process) for ``provider``, per 1,000 tokens delivered. Results are
printed as a markdown table and written to ``var/bench-chatkit.json`` (under $CHAT_VAR_DIR
when set); exit status 1 when any reply failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import http_paths
from bench.stack import (
    BENCH_PASSWORD,
    BENCH_USER,
    ROOT,
    ProductStack,
    StubProcess,
    machine_info,
    wait_idle,
)
from bench.streaming import (
    IDLE_TIMEOUT,
    PROMPT,
    CpuMeter,
    Stream,
    _baseline,
    _describe,
    _ratio,
    _workdir,
    percentile,
)
from tests.servers import login

PATHS = ("provider", "sse", "chatkit")
OUTPUT = Path(os.environ.get("CHAT_VAR_DIR") or ROOT / "var") / "bench-chatkit.json"


@dataclass
class Reply(Stream):
    """What one client saw of one reply, and the bytes of the response it came in."""

    bytes: int = 0


async def _reply(
    http: httpx.AsyncClient, path: str, gate: asyncio.Event, deadline: float, expected: int
) -> Reply:
    way = http_paths.PATHS[path]  # the request and its event reader, shared with bench.scale
    reply = Reply()
    await gate.wait()
    sent_ns = time.time_ns()
    try:
        async with asyncio.timeout_at(deadline):
            async with http.stream("POST", way.url, content=way.body(PROMPT)) as answer:
                if answer.status_code != 200:
                    raise RuntimeError(f"HTTP {answer.status_code}: {(await answer.aread())[:150]}")
                ended = False
                async for line in answer.aiter_lines():
                    received_ns = time.time_ns()
                    reply.bytes += len(line) + 1
                    if line.startswith("data: ") and not ended:
                        seen = way.read(json.loads(line[6:]))
                        if seen.text:
                            reply.add(seen.text, received_ns, sent_ns)
                        if seen.end and seen.end != "complete":
                            raise RuntimeError(f"reply ended {seen.end}")
                        ended = bool(seen.end)
        if reply.tokens != expected:
            reply.error = f"{reply.tokens} of {expected} tokens"
    except Exception as exc:  # counted and reported, never hidden
        reply.error = _describe(exc)
    reply.finished_at = time.monotonic()
    return reply


async def _product(
    server_url: str, login_client: httpx.Client, path: str, streams: int, args, meter: CpuMeter
) -> tuple[list[Stream], float]:
    http = httpx.AsyncClient(
        base_url=server_url,
        cookies=login_client.cookies,
        headers=login_client.headers,
        timeout=IDLE_TIMEOUT,  # a read this long without a byte (heartbeats included) fails
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )
    async with http:
        warm = asyncio.Event()
        warm.set()
        first = await _reply(http, path, warm, time.monotonic() + 30, args.tokens)
        if first.error:
            raise RuntimeError(f"the {path} warm-up reply failed: {first.error}")
        gate = asyncio.Event()
        deadline = time.monotonic() + args.timeout
        tasks = [
            asyncio.create_task(_reply(http, path, gate, deadline, args.tokens))
            for _ in range(streams)
        ]
        await asyncio.sleep(0)  # every task reaches the gate, so they start together
        meter.begin()
        started = time.monotonic()
        gate.set()
        await asyncio.wait(tasks)
        meter.end()
    results = [t.result() for t in tasks]
    return results, max(r.finished_at for r in results) - started


def summarize(path: str, streams: int, results: list[Stream], wall: float, cpu: dict) -> dict:
    """One path at one N: the figures the table and the JSON show."""
    tokens = sum(r.tokens for r in results)
    worker = "client" if path == "provider" else "daphne"
    per_1k = {k: round(v / tokens * 1000, 4) if tokens else None for k, v in cpu.items()}
    ok = [r for r in results if not r.error]
    return {
        "path": path,
        "streams": streams,
        "ok": len(ok),
        "failed": len(results) - len(ok),
        "error_samples": sorted({r.error for r in results if r.error})[:3],
        "ttft_ms": {
            f"p{q}": percentile([r.ttft_ms for r in results if r.ttft_ms is not None], q)
            for q in (50, 99)
        },
        "chunk_latency_ms": {
            f"p{q}": percentile([v for r in results for v in r.latency_ms], q) for q in (50, 99)
        },
        "chunks_per_reply": round(sum(r.frames for r in ok) / len(ok), 1) if ok else None,
        # The product's response bytes (the SDK's are not counted here).
        "bytes_per_reply": round(sum(r.bytes for r in ok) / len(ok))
        if worker == "daphne" and ok
        else None,
        "tokens_delivered": tokens,
        "wall_s": round(wall, 2),
        "cpu_s": cpu,
        "cpu_s_per_1k_tokens": per_1k,
        "worker": worker,
        "worker_cpu_per_1k": per_1k.get(worker),
    }


def add_ratios(rows: dict[str, dict]) -> None:
    """chatkit / sse, chatkit / provider, sse / provider, for TTFT p50 and worker CPU."""
    for mine, theirs in (("sse", "provider"), ("chatkit", "sse"), ("chatkit", "provider")):
        a, b = rows[mine], rows[theirs]
        a.setdefault("ratios", {})[f"/{theirs}"] = {
            "ttft_p50": _ratio(a["ttft_ms"]["p50"], b["ttft_ms"]["p50"]),
            "cpu_per_1k": _ratio(a["worker_cpu_per_1k"], b["worker_cpu_per_1k"]),
        }


def table(summaries: list[dict]) -> str:
    head = (
        "| path | N | ok | failed | TTFT p50 ms | TTFT p99 ms | chunk p50 ms | chunk p99 ms "
        "| wall s | CPU s/1k tok | TTFT ÷sse | TTFT ÷provider | CPU ÷sse | CPU ÷provider |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in summaries:
        r = s.get("ratios", {})
        cells = [
            *(s[k] for k in ("path", "streams", "ok", "failed")),
            *s["ttft_ms"].values(),
            *s["chunk_latency_ms"].values(),
            s["wall_s"],
            s["worker_cpu_per_1k"],
            *(
                r.get(k, {}).get(m)
                for m in ("ttft_p50", "cpu_per_1k")
                for k in ("/sse", "/provider")
            ),
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chatkit", description=__doc__)
    parser.add_argument("--streams", default="1,10,50", help="comma-separated N (%(default)s)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per reply")
    parser.add_argument("--delay-ms", type=float, default=10, help="stub delay between tokens")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a run may take")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--workdir", type=Path, help="keep SQLite and daphne logs here")
    args = parser.parse_args(argv)
    streams_list = [int(n) for n in args.streams.split(",")]
    machine = machine_info()
    print(
        f"chatkit bench: N={streams_list}, {args.tokens} tokens x {args.delay_ms:g} ms", flush=True
    )
    summaries: list[dict] = []
    with (
        _workdir(args.workdir) as tmp,
        StubProcess(tokens=args.tokens, delay_ms=args.delay_ms) as stub,
        ProductStack(stub_url=stub.url, workdir=Path(tmp)) as stack,
    ):
        for streams in streams_list:
            rows: dict[str, dict] = {}
            meter = CpuMeter({"client": os.getpid(), "stub": stub.pid})
            results, wall = asyncio.run(
                _baseline(stub.url, streams, args.tokens, args.timeout, meter)
            )
            rows["provider"] = summarize("provider", streams, results, wall, meter.spent)
            with (
                stack.daphne() as server,
                contextlib.closing(login(server.url, BENCH_USER, BENCH_PASSWORD)) as client,
            ):
                pid = server.process.pid
                for path in ("sse", "chatkit"):
                    wait_idle(pid)
                    meter = CpuMeter({"daphne": pid, "client": os.getpid(), "stub": stub.pid})
                    run = _product(server.url, client, path, streams, args, meter)
                    results, wall = asyncio.run(run)
                    rows[path] = summarize(path, streams, results, wall, meter.spent)
            add_ratios(rows)
            for s in rows.values():
                print(
                    f"  {s['path']:8} N={streams:<3} {s['wall_s']:6.1f} s  ok {s['ok']}  "
                    f"failed {s['failed']}  ttft p50 {s['ttft_ms']['p50']} ms",
                    flush=True,
                )
            summaries.extend(rows.values())
    summaries.sort(key=lambda s: (PATHS.index(s["path"]), s["streams"]))
    print()
    print(table(summaries))
    print(
        f"\n{machine['cpus']} CPUs, {machine['cpu_model']}, Python {machine['python']}, "
        f"commit {machine['commit']}; CPU: daphne (provider: SDK client) s per 1k tokens"
    )
    result = {
        "machine": {**machine, "loadavg_after": os.getloadavg()},
        "settings": {"streams": streams_list, "tokens": args.tokens, "delay_ms": args.delay_ms},
        "results": summaries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")
    failed = sum(s["failed"] for s in summaries)
    if failed:
        print(f"{failed} replies failed or were incomplete: see error_samples in the JSON")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
