"""Attachments benchmark: upload throughput, and what a file adds to the time to first token.

    .venv/bin/python -m bench.attachments [--runs 20] [--uploads 20] [--concurrency 4]

One daphne process (laptop stack: SQLite, in-process layer), the stub provider in its own
process, AGENT_VISION_MODELS naming the stub's model and no upload quota. Three files made here,
each the same every run (seeded):

- ``pdf``: about 1 MB of PDF, built by hand, every page lines of real text in Helvetica;
- ``jpeg``: a 4-megapixel photo-like JPEG (smooth noise under fine noise, so it does not
  compress to nothing), from Pillow;
- ``text``: 5 MB of UTF-8 text, lines of words.

Uploads: ``POST /api/attachments/`` (multipart, as the page sends it), ``--uploads`` of each
file one after another, then the same number with ``--concurrency`` in flight at once. Each
upload's time runs from sending the request to the 201; MB/s is the file's bytes over the
median (p50) and the 90th-percentile (p90, slow) upload's time, and the whole batch's bytes
over its wall time (all).

Time to first token: ``POST /api/stream/message`` (a new thread each time), from sending the
request to the first `token` frame, for the same message without a file, with the PDF, and
with the JPEG (uploaded beforehand, not timed), interleaved run by run so the three share
conditions, each after a pause (SETTLE_SECONDS) in which the previous reply's title is
written; one unmeasured warm-up of each first. Medians and p90, and each one's ratio to the
message without a file.

Also, in this process, the server's inspection alone (chat/attachments.py ``inspect``: the
sniffing, the PDF's text, the image decoded and re-encoded) of each file, to say where an
upload's time goes. Results are printed as markdown tables and written to
``var/bench-attachments.json`` (under $CHAT_VAR_DIR when set); docs/performance.md,
"Attachments", reports a run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.stack import (
    BENCH_PASSWORD,
    BENCH_USER,
    ROOT,
    STUB_MODEL,
    ProductStack,
    StubProcess,
    machine_info,
    wait_idle,
)
from bench.streaming import _workdir, percentile
from tests.servers import login

OUTPUT = Path(os.environ.get("CHAT_VAR_DIR") or ROOT / "var") / "bench-attachments.json"
PROMPT = "Benchmark: what does the file say?"
SETTLE_SECONDS = 0.3
WORDS = (
    "the quarterly figures show revenue rising in every region while costs held steady "
    "and the board asked for a plan to hire twelve engineers before the autumn release of "
    "the product which customers have requested since the spring survey found demand"
).split()


# --- the files ------------------------------------------------------------------------------


def _line(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_pdf(target_bytes: int = 1_000_000) -> bytes:
    """A PDF of about `target_bytes`: pages of 50 lines of text each, uncompressed."""
    rng = random.Random(1)
    pages: list[bytes] = []
    size = 0
    while size < target_bytes:
        lines = [f"BT /F1 10 Tf 50 {760 - 14 * i} Td ({_line(rng, 14)}) Tj ET" for i in range(50)]
        stream = "\n".join(lines).encode()
        pages.append(stream)
        size += len(stream) + 200
    count = len(pages)
    # Objects: 1 catalog, 2 pages, 3 font, then a page and its contents for each page.
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count))
        + b"] /Count %d >>" % count,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, stream in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def make_jpeg(width: int = 2400, height: int = 1700) -> bytes:
    """A 4-megapixel JPEG that looks like a photo to the encoder: smooth colour fields (noise
    scaled up) with fine grain over them, quality 90."""
    from PIL import Image, ImageChops

    rng = random.Random(2)
    coarse = Image.frombytes(
        "RGB", (width // 40, height // 40), rng.randbytes(width // 40 * (height // 40) * 3)
    ).resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).point(
        lambda v: v // 8
    )
    photo = ImageChops.add(coarse, Image.merge("RGB", (grain, grain, grain)))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_text(target_bytes: int = 5_000_000) -> bytes:
    rng = random.Random(3)
    lines, size = [], 0
    while size < target_bytes:
        lines.append(_line(rng, 12))
        size += len(lines[-1]) + 1
    return ("\n".join(lines) + "\n").encode()


FILES = {  # kind: (name, maker)
    "pdf": ("report.pdf", make_pdf),
    "jpeg": ("photo.jpg", make_jpeg),
    "text": ("notes.txt", make_text),
}


# --- measuring ------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": round(statistics.median(values), 2) if values else None,
        "p90": percentile(values, 90),
    }


async def _upload(http: httpx.AsyncClient, name: str, content: bytes) -> tuple[float, str]:
    started = time.perf_counter()
    answer = await http.post("/api/attachments/", files={"file": (name, content)})
    elapsed = time.perf_counter() - started
    if answer.status_code != 201:
        raise RuntimeError(f"upload of {name}: HTTP {answer.status_code}: {answer.text[:200]}")
    return elapsed, answer.json()["id"]


async def uploads(
    http: httpx.AsyncClient, name: str, content: bytes, count: int, concurrency: int
) -> dict[str, Any]:
    """`count` uploads of one file, `concurrency` at a time."""
    pending = list(range(count))
    times: list[float] = []

    async def worker() -> None:
        while pending:
            pending.pop()
            elapsed, _ = await _upload(http, name, content)
            times.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    mb = len(content) / 1e6
    return {
        "concurrency": concurrency,
        "uploads": count,
        "seconds": _stats(times),
        # The rate of the median upload and of the 90th-percentile (slow) one.
        "mb_per_s_each": {
            "p50": round(mb / statistics.median(times), 2),
            "p90": round(mb / percentile(times, 90), 2),
        },
        "mb_per_s_aggregate": round(mb * count / wall, 2),
        "wall_s": round(wall, 2),
    }


async def ttft(http: httpx.AsyncClient, attachment: str | None) -> float:
    """Milliseconds from sending a message (with the attachment) to its first token."""
    body: dict[str, Any] = {"message": PROMPT}
    if attachment is not None:
        body["attachments"] = [attachment]
    started = time.perf_counter()
    first = None
    async with http.stream("POST", "/api/stream/message", json=body) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}: {(await answer.aread())[:200]}")
        async for line in answer.aiter_lines():
            if not line.startswith("data: "):
                continue
            frame = json.loads(line[6:])
            if frame["type"] == "token" and first is None:
                first = (time.perf_counter() - started) * 1000
            elif frame["type"] == "error":
                raise RuntimeError(f"error frame: {frame.get('message')}")
    if first is None:
        raise RuntimeError("the reply had no token")
    return first


async def first_tokens(
    http: httpx.AsyncClient, files: dict[str, bytes], runs: int
) -> dict[str, dict[str, Any]]:
    """TTFT of the message alone, with the PDF and with the JPEG, interleaved."""
    cases = {"none": None, "pdf": "pdf", "jpeg": "jpeg"}
    times: dict[str, list[float]] = {case: [] for case in cases}
    for run in range(runs + 1):  # run 0 warms up each case, unmeasured
        for case, kind in cases.items():
            attachment = None
            if kind is not None:
                _, attachment = await _upload(http, FILES[kind][0], files[kind])
            # The last reply's title is written after it ends: let that pass, or the next
            # message (whichever it is) pays for it.
            await asyncio.sleep(SETTLE_SECONDS)
            elapsed = await ttft(http, attachment)
            if run:
                times[case].append(elapsed)
    alone = statistics.median(times["none"])
    alone_p90 = percentile(times["none"], 90)
    result = {}
    for case, values in times.items():
        figures = _stats(values)
        result[case] = {
            "ttft_ms": figures,
            "ratio_p50": round(figures["p50"] / alone, 2),
            "ratio_p90": round(figures["p90"] / alone_p90, 2) if alone_p90 else None,
            "added_ms_p50": round(figures["p50"] - alone, 2),
        }
    return result


def inspect_times(files: dict[str, bytes], repeat: int = 5) -> dict[str, float]:
    """The server's inspection of each file alone, in this process: median milliseconds."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()
    from chat import attachments

    timings = {}
    for kind, content in files.items():
        spent = []
        for _ in range(repeat):
            started = time.perf_counter()
            attachments.inspect(FILES[kind][0], content)
            spent.append((time.perf_counter() - started) * 1000)
        timings[kind] = round(statistics.median(spent), 1)
    return timings


async def measure(server_url: str, login_client: httpx.Client, files, args) -> dict[str, Any]:
    http = httpx.AsyncClient(
        base_url=server_url,
        cookies=login_client.cookies,
        headers=login_client.headers,
        timeout=120,
    )
    async with http:
        for kind, content in files.items():  # warm-up: every code path loaded once
            await _upload(http, FILES[kind][0], content)
        throughput = {}
        for kind, content in files.items():
            name = FILES[kind][0]
            throughput[kind] = [
                await uploads(http, name, content, args.uploads, 1),
                await uploads(http, name, content, args.uploads, args.concurrency),
            ]
            print(
                f"  upload {kind:5} {len(content) / 1e6:5.2f} MB: "
                f"{throughput[kind][0]['mb_per_s_aggregate']} MB/s one at a time, "
                f"{throughput[kind][1]['mb_per_s_aggregate']} MB/s {args.concurrency} at once",
                flush=True,
            )
        ttfts = await first_tokens(http, files, args.runs)
    return {"uploads": throughput, "ttft": ttfts}


def tables(result: dict[str, Any], sizes: dict[str, int]) -> str:
    lines = [
        "| file | MB | in flight | uploads | s p50 | s p90 | MB/s p50 | MB/s p90 | MB/s all "
        "| server inspect ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, rows in result["uploads"].items():
        for row in rows:
            cells = [
                kind,
                round(sizes[kind] / 1e6, 2),
                row["concurrency"],
                row["uploads"],
                row["seconds"]["p50"],
                row["seconds"]["p90"],
                row["mb_per_s_each"]["p50"],
                row["mb_per_s_each"]["p90"],
                row["mb_per_s_aggregate"],
                result["inspect_ms"][kind],
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "| message | TTFT p50 ms | TTFT p90 ms | ÷ alone p50 | ÷ alone p90 | added p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for case, row in result["ttft"].items():
        cells = [
            {"none": "no file", "pdf": "1 MB PDF", "jpeg": "4 MP JPEG"}[case],
            row["ttft_ms"]["p50"],
            row["ttft_ms"]["p90"],
            row["ratio_p50"],
            row["ratio_p90"],
            row["added_ms_p50"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attachments", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="TTFT runs of each message")
    parser.add_argument("--uploads", type=int, default=20, help="uploads of each file per mode")
    parser.add_argument("--concurrency", type=int, default=4, help="uploads in flight at once")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--workdir", type=Path, help="keep SQLite, files and daphne logs here")
    args = parser.parse_args(argv)
    machine = machine_info()
    files = {kind: maker() for kind, (_, maker) in FILES.items()}
    sizes = {kind: len(content) for kind, content in files.items()}
    print(
        "attachments bench: "
        + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items())
        + f"; {args.uploads} uploads each, {args.runs} TTFT runs",
        flush=True,
    )
    with (
        _workdir(args.workdir) as tmp,
        StubProcess(tokens=8, delay_ms=1) as stub,
        ProductStack(stub_url=stub.url, workdir=Path(tmp)) as stack,
    ):
        stack.env.update(AGENT_VISION_MODELS=STUB_MODEL, UPLOAD_QUOTA_BYTES="0")
        os.environ["CHAT_VAR_DIR"] = tmp  # the inspection below reads the same settings
        with stack.daphne() as server:
            client = login(server.url, BENCH_USER, BENCH_PASSWORD)
            wait_idle(server.process.pid)
            result = asyncio.run(measure(server.url, client, files, args))
            client.close()
        result["inspect_ms"] = inspect_times(files)
    print()
    print(tables(result, sizes))
    print(
        f"\n{machine['cpus']} CPUs, {machine['cpu_model']}, Python {machine['python']}, "
        f"commit {machine['commit']}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "machine": {**machine, "loadavg_after": os.getloadavg()},
                "settings": vars(args) | {"output": str(args.output), "workdir": None},
                "sizes": sizes,
                **result,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
