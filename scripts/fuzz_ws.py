"""Fuzz the thread WebSocket of a real daphne with generated frames (docs/fuzzing.md).

    .venv/bin/python -m scripts.fuzz_ws --frames 10000 --seed 1

One daphne process on laptop defaults (SQLite, in-process layer) with the stub as its model
and no per-user limits (NO_USER_LIMITS: COMMANDS_PER_SECOND=0 and the others) takes seeded
frames on a logged-in user's thread: random JSON, commands with wrong field types, valid
commands with odd text, deep nesting, huge strings up to just under daphne's 1 MiB frame limit,
odd Unicode (escaped lone surrogates, NUL, RTL marks, emoji), binary frames, invalid UTF-8,
non-JSON text, a few frames past 1 MiB, and floods of hundreds of frames sent without reading.
Every frame (or flood) is followed by a heartbeat that must be answered, and each frame that
the protocol answers at once (every one but start, regenerate, edit and stop) must have had
its answer by then. A few odd handshakes follow (unknown thread, no cookie, foreign origin,
unrouted path), then a flood on a second process over the same database with the default
limits, which must still answer a heartbeat two seconds later.

Fails (exit 1) on: a close code 1011, any other close not caused by a frame past the size
limit or invalid UTF-8 (or a slow reader's 1013 after a flood), an HTTP 5xx, an `internal`
error frame, a frame left unanswered, a heartbeat not answered, or "Traceback" / "Exception
inside application" / "Internal Server Error" in a daphne log.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scripts.processes import NO_USER_LIMITS, Daphne, cookie_header, login, prepare, server_env
from scripts.stub_provider import StubServer

FRAME_LIMIT = 1024 * 1024
"""daphne's default websocket_max_frame_size (and message size): autobahn fails a bigger one."""
# The consumer refuses unparsed any text longer than MAX_MESSAGE_CHARS * 6 + 1024 (the default
# MAX_MESSAGE_CHARS is 16000); the fuzz never sends a heartbeat command longer than the smaller
# figure, so it always knows which frames a heartbeat answers.
MAX_MESSAGE_CHARS = 16000
UNPARSED_CHARS = MAX_MESSAGE_CHARS * 6 + 1024
# Answered while the command is handled, so before the heartbeat that follows it (a reply's
# frames, and errors that end a reply, carry a message_id and come later).
ANSWER_TYPES = {"error", "ready", "heartbeat"}
# Answered later through the reply (or not at all): nothing is required before the heartbeat.
LATER_COMMANDS = {"start", "regenerate", "edit", "stop"}
# Closes a frame may cause: autobahn fails the connection (1009 past the size limit, 1007 on
# invalid UTF-8) by dropping TCP, which the client sees as 1006.
PROTOCOL_CLOSES = {1006, 1007, 1009}
# A socket that does not read while it floods may be dropped as a slow reader (docs/protocol.md).
SLOW_READER = 1013
LOG_FAILURES = ("Traceback", "Exception inside application", "Internal Server Error")
USER, PASSWORD = "fuzz", "fuzz-pw"
HEARTBEAT = json.dumps({"command": "heartbeat"})

ODD = [
    "\x00",
    "\ud800",
    "\udfff",
    "\udbff\udc00",
    "\u200f",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "\U0010ffff",
    "\u0301\u0301\u0301",
    "😀",
    "👩\u200d👩\u200d👧",
    "🏳️\u200d🌈",
    "𝕏",
    "ﷺ",
    "\x7f",
    "\x1b[31m",
    "\r\n",
    "\t",
    '"',
    "\\",
    "</script><script>",
    "%s%n",
    "{{x}}",
    "' OR 1=1 --",
    "ʻ",
    "İ",
]


@dataclass(frozen=True)
class Frame:
    """One generated frame: text (str, or bytes sent as a text frame) or binary."""

    kind: str
    data: str | bytes
    binary: bool = False

    @property
    def payload(self) -> bytes:
        """The bytes on the wire (a str that cannot be UTF-8 is never generated)."""
        return self.data if isinstance(self.data, bytes) else self.data.encode()

    @property
    def expect(self) -> str:
        """`close` (the protocol may drop the socket), `later` (no answer required before the
        next heartbeat), `heartbeat` (answered by one) or `answer` (by an error or ready)."""
        payload = self.payload
        if len(payload) > FRAME_LIMIT:
            return "close"
        if self.binary:
            return "answer"
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return "close"
        if len(text) > UNPARSED_CHARS:
            return "answer"
        try:
            command = json.loads(text)
        except (ValueError, RecursionError):
            return "answer"
        name = command.get("command") if isinstance(command, dict) else None
        if isinstance(name, str) and name in LATER_COMMANDS:
            return "later"
        if name == "heartbeat":
            return "heartbeat" if len(text) <= MAX_MESSAGE_CHARS else "answer"
        return "answer"

    def describe(self, limit: int = 160) -> str:
        """The frame for a failure message: kind, size, and the start of its data."""
        head = self.data[:limit]
        more = "..." if len(self.data) > limit else ""
        shape = "binary" if self.binary else "text"
        return f"{self.kind} {shape} frame of {len(self.payload)} bytes: {head!r}{more}"


# --- generated values ---------------------------------------------------------------------


def odd_text(rng: random.Random, length: int) -> str:
    """Text mixing ASCII words, odd Unicode and control characters."""
    parts: list[str] = []
    size = 0
    while size < length:
        roll = rng.random()
        if roll < 0.4:
            part = rng.choice(ODD)
        elif roll < 0.8:
            part = "".join(rng.choices("abcdefghij klmnop", k=rng.randint(1, 8)))
        else:
            part = chr(rng.choice([rng.randint(0x20, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
        parts.append(part)
        size += len(part)
    return "".join(parts)[:length]


def scalar(rng: random.Random) -> Any:
    """A JSON scalar, edge values included (NaN and Infinity as Python's json writes them)."""
    return rng.choice(
        [
            None,
            True,
            False,
            0,
            -1,
            rng.randint(-(2**70), 2**70),
            rng.random() * 10 ** rng.randint(-300, 300),
            float("nan"),
            float("inf"),
            -0.0,
            5e-324,
            "",
            odd_text(rng, rng.randint(1, 40)),
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        ]
    )


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: objects, arrays and scalars, a few levels deep."""
    roll = rng.random()
    if depth >= 4 or roll < 0.4:
        return scalar(rng)
    if roll < 0.7:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {odd_text(rng, rng.randint(0, 12)): json_value(rng, depth + 1) for _ in range(5)}


def dumps(rng: random.Random, value: Any) -> str:
    """JSON text, sometimes with raw non-ASCII (escaped when it holds a lone surrogate)."""
    if rng.random() < 0.5:
        text = json.dumps(value, ensure_ascii=False)
        try:
            text.encode()
            return text
        except UnicodeEncodeError:
            pass
    return json.dumps(value)


def sendable(text: str) -> str:
    """The text as a text frame can carry it: a lone surrogate has no UTF-8, so it becomes "?"
    (in JSON it travels escaped, as \\ud800, which `dumps` keeps)."""
    return text.encode(errors="replace").decode()


def storable(text: str) -> str:
    """The text without what the product refuses to store (NUL, lone surrogates), so that a
    reply runs on it."""
    return sendable(text).replace("\x00", "")


def client_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- frame generators (kind -> generator) --------------------------------------------------


def gen_json(rng: random.Random) -> Frame:
    """A random JSON value: object, array or scalar."""
    return Frame("json", dumps(rng, json_value(rng)))


COMMAND_NAMES = ["start", "stop", "heartbeat", "resync", "regenerate", "edit"]
ODD_NAMES = ["START", " start", "heartbeat\x00", "", "ping", "héartbeat", "heartbeat\u200b"]


def gen_wrong_types(rng: random.Random) -> Frame:
    """A command-looking object whose fields have random types and values."""
    roll = rng.random()
    if roll < 0.7:
        name: Any = rng.choice(COMMAND_NAMES)
    elif roll < 0.85:
        name = rng.choice(ODD_NAMES)
    else:
        name = json_value(rng)
    command = {"command": name}
    for key in ("message", "client_id", "message_id", "seq", "thread_id"):
        if rng.random() < 0.5:
            command[key] = json_value(rng)
    if rng.random() < 0.3:
        command[odd_text(rng, 8)] = json_value(rng)
    return Frame("wrong_types", dumps(rng, command))


def gen_valid(rng: random.Random) -> Frame:
    """A well-formed command, its text odd; sometimes just over MAX_MESSAGE_CHARS."""
    name = rng.choice(COMMAND_NAMES)
    if name in ("start", "edit"):
        length = rng.choice([rng.randint(1, 200), MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS + 1])
        text = odd_text(rng, length)
        text = storable(text) if rng.random() < 0.5 else text
        command = {"command": name, "message": text, "client_id": client_id(rng)}
        if name == "edit":
            command["message_id"] = rng.choice([client_id(rng), rng.randint(1, 10**6)])
    elif name == "regenerate":
        command = {"command": name, "client_id": client_id(rng)}
    else:
        command = {"command": name}
    return Frame("valid", dumps(rng, command))


def gen_nested(rng: random.Random) -> Frame:
    """Deeply nested JSON: near and far past the parser's recursion limit, alone, inside a
    command, or left unclosed."""
    depth = rng.choice([rng.randint(2, 900), rng.randint(900, 1100), rng.randint(1100, 60_000)])
    style = rng.choice(["array", "object", "mixed"])
    opens, closes = [], []
    for level in range(depth):
        if style == "array" or (style == "mixed" and level % 2):
            opens.append("[")
            closes.append("]")
        else:
            opens.append('{"a":')
            closes.append("}")
    core = "".join(opens) + "0" + "".join(reversed(closes))
    roll = rng.random()
    if roll < 0.4:
        text = core
    elif roll < 0.8:
        field_name = rng.choice(["command", "message", "client_id", "message_id"])
        if field_name == "command":
            text = '{"command": ' + core + "}"
        else:
            text = '{"command": "start", "' + field_name + '": ' + core + "}"
    else:
        text = core[: rng.randint(1, len(core) - 1)]
    return Frame("nested", text)


def gen_huge(rng: random.Random) -> Frame:
    """A huge string: around the message limit, the consumer's unparsed limit, or up to just
    under daphne's frame limit; as a start message, raw text, a key, or a long array."""
    size = rng.choice(
        [
            rng.randint(MAX_MESSAGE_CHARS - 64, MAX_MESSAGE_CHARS + 64),
            rng.randint(UNPARSED_CHARS - 64, UNPARSED_CHARS + 64),
            rng.randint(200_000, FRAME_LIMIT - 4096),
            FRAME_LIMIT - 64,
        ]
    )
    unit = rng.choice(["x", "é", "😀", "\u202e", odd_text(rng, 7), "\\u0000"])
    body = unit * max(1, size // len(unit.encode(errors="surrogatepass")))
    shape = rng.choice(["start", "raw", "key", "array"])
    if shape == "start":
        text = dumps(rng, {"command": "start", "message": body, "client_id": client_id(rng)})
    elif shape == "key":
        text = dumps(rng, {body: 1, "command": "resync"})
    elif shape == "array":
        text = "[" + ",".join(["0"] * (size // 2)) + "]"
    else:
        text = sendable(body)
    data = text.encode()
    if len(data) > FRAME_LIMIT - 16:
        # Cut to just under the limit at a character boundary, so the frame stays UTF-8.
        data = data[: FRAME_LIMIT - 16].decode(errors="ignore").encode()
    return Frame("huge", data.decode())


UNICODE_TEXTS = [
    '{"command":"start","message":"\\ud800","client_id":"%s"}',
    '{"command":"start","message":"a\\u0000b","client_id":"%s"}',
    '{"command":"start","message":"\\udfff\\ud800\\u202e","client_id":"%s"}',
    '{"command":"edit","message":"\\ud83d","message_id":"%s","client_id":"\\ud800"}',
    '{"command":"regenerate","client_id":"\\u0000%s"}',
    '{"command":"\\ud800"}',
    '{"command":"heart\\u0000beat"}',
    '{"\\ud800":"%s","command":"resync"}',
    '"\\udfff"',
    '["\\ud800\\udc00\\ud800"]',
    '\ufeff{"command":"heartbeat"}',
    '{"command":"start","message":"\u202e\u2066😀\u200f %s","client_id":"%s"}',
]


def gen_unicode(rng: random.Random) -> Frame:
    """Odd Unicode in commands: lone surrogates and NUL as JSON escapes, RTL marks, emoji,
    a byte-order mark, raw control characters."""
    if rng.random() < 0.6:
        template = rng.choice(UNICODE_TEXTS)
        text = template % tuple(client_id(rng) for _ in range(template.count("%s")))
    else:
        command = {"command": rng.choice(COMMAND_NAMES), "message": odd_text(rng, 60)}
        command["client_id"] = rng.choice([client_id(rng), odd_text(rng, 36)])
        text = dumps(rng, command)
        if rng.random() < 0.3:
            text = text.replace('"', '"\x00', 1)  # a raw NUL inside the JSON text
    return Frame("unicode", text)


def gen_binary(rng: random.Random) -> Frame:
    """A binary frame: random bytes, nothing, or a valid command sent as bytes."""
    data = rng.choice(
        [rng.randbytes(rng.randint(1, 4096)), b"", HEARTBEAT.encode(), b'{"command":"start"}']
    )
    return Frame("binary", data, binary=True)


def gen_invalid_utf8(rng: random.Random) -> Frame:
    """A text frame that is not UTF-8 (the protocol fails the connection)."""
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"])
    return Frame("invalid_utf8", b'{"command":"' + bad + b'"}')


def gen_text(rng: random.Random) -> Frame:
    """Text that is not a JSON command: broken, Python-ish, numbers past the digit limit."""
    text = rng.choice(
        [
            "",
            " ",
            "null",
            "{",
            '{"command":"heartbeat"',
            "{'command': 'heartbeat'}",
            '{"command":"heartbeat"} trailing',
            '{"command":"heartbeat","command":"resync"}',
            "NaN",
            "-Infinity",
            "1" * rng.randint(4300, 20_000),
            "1e999999",
            "heartbeat",
            "// comment",
            "\x00",
            "\t\n\r",
            sendable(odd_text(rng, rng.randint(1, 300))),
            "".join(rng.choices('{}[]":,0aé ', k=rng.randint(1, 300))),
        ]
    )
    return Frame("text", text)


def gen_oversize(rng: random.Random) -> Frame:
    """A frame past daphne's limit: the protocol closes the socket, which then reconnects."""
    extra = rng.randint(1, 4096)
    if rng.random() < 0.5:
        return Frame("oversize", b"\x00" * (FRAME_LIMIT + extra), binary=True)
    return Frame("oversize", "x" * (FRAME_LIMIT + extra))


GENERATORS: dict[str, tuple[Callable[[random.Random], Frame], float]] = {
    "json": (gen_json, 18),
    "wrong_types": (gen_wrong_types, 20),
    "valid": (gen_valid, 8),
    "nested": (gen_nested, 8),
    "huge": (gen_huge, 3),
    "unicode": (gen_unicode, 14),
    "binary": (gen_binary, 8),
    "invalid_utf8": (gen_invalid_utf8, 1),
    "text": (gen_text, 14),
    "oversize": (gen_oversize, 0.2),
}
# Floods: small frames, each answered at once, so the count of answers can be checked.
FLOOD_KINDS = ("json", "wrong_types", "unicode", "binary", "text")


def generate(rng: random.Random, kinds: tuple[str, ...] | None = None) -> Frame:
    """One frame of a kind drawn by weight."""
    names = list(kinds or GENERATORS)
    weights = [GENERATORS[name][1] for name in names]
    return GENERATORS[rng.choices(names, weights)[0]][0](rng)


def flood(rng: random.Random, size: int, *, heartbeats: bool = True) -> list[Frame]:
    """`size` small frames that each get an answer at once (heartbeats left out if asked)."""
    frames: list[Frame] = []
    while len(frames) < size:
        frame = generate(rng, FLOOD_KINDS)
        if frame.expect == "answer" or (heartbeats and frame.expect == "heartbeat"):
            frames.append(frame)
    return [Frame("flood", frame.data, frame.binary) for frame in frames]


def plan(rng: random.Random, frames: int, flood_share: float) -> list[int | None]:
    """The batches of a run: None for one generated frame, or the size of a flood; `frames`
    in all."""
    flood_budget = int(frames * flood_share)
    sizes = []
    while flood_budget >= 50:
        size = min(rng.randint(100, 400), flood_budget)
        sizes.append(size)
        flood_budget -= size
    batches: list[int | None] = [None] * (frames - sum(sizes))
    for size in sizes:
        batches.insert(rng.randint(0, len(batches)), size)
    return batches


# --- the run ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a run sent and saw; `failures` says what broke, with the frame that did it."""

    sent: collections.Counter = field(default_factory=collections.Counter)
    sent_bytes: collections.Counter = field(default_factory=collections.Counter)
    received: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    closes: collections.Counter = field(default_factory=collections.Counter)
    handshakes: collections.Counter = field(default_factory=collections.Counter)
    limited: collections.Counter = field(default_factory=collections.Counter)
    reconnects: int = 0
    # (wall time, what happened): closes and handshakes, to name the cause of a log line.
    events: list[tuple[float, str]] = field(default_factory=list)
    fuzz_seconds: float = 0.0
    http_5xx: int = 0
    heartbeats: int = 0
    final_heartbeat: bool = False
    seconds: float = 0.0
    log_lines: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def http(self, what: str, status: int) -> None:
        """Check an HTTP status: a 5xx is a failure."""
        if status >= 500:
            self.http_5xx += 1
            self.fail(f"{what} answered HTTP {status}")

    def see(self, frame: dict[str, Any]) -> None:
        """Count a server frame; an `internal` error is a failure."""
        kind = frame.get("type")
        self.received[kind] += 1
        if kind == "error":
            self.errors[frame.get("code")] += 1
            if frame.get("code") == "internal":
                self.fail(f"an `internal` error frame: {frame}")

    def report(self) -> str:
        """The summary table."""
        frames = sum(self.sent.values())
        main = frames - self.sent["limited_flood"]
        rate = main / self.fuzz_seconds if self.fuzz_seconds else 0.0
        lines = [
            f"frames sent      {frames} ({sum(self.sent_bytes.values()) / 2**20:.1f} MiB); "
            f"{main} in the main run: {self.fuzz_seconds:.1f} s, {rate:.0f} frames/s",
            f"whole run        {self.seconds:.1f} s (servers, handshakes, limited flood included)",
        ]
        lines.append(f"{'kind':<16} {'frames':>7} {'MiB':>8}")
        for kind, count in self.sent.most_common():
            lines.append(f"{kind:<16} {count:>7} {self.sent_bytes[kind] / 2**20:>8.2f}")
        lines += [
            f"frames received  {_counts(self.received)}",
            f"error codes      {_counts(self.errors)}",
            f"close codes      {_counts(self.closes)}",
            f"reconnects       {self.reconnects}",
            f"heartbeats       {self.heartbeats} answered; final "
            f"{'answered' if self.final_heartbeat else 'NOT answered'}",
            f"handshakes       {_counts(self.handshakes)}",
            f"limited flood    {_counts(self.limited)}",
            f"1011 closes      {self.closes[1011]}",
            f"HTTP 5xx         {self.http_5xx}",
            f"log tracebacks   {self.log_lines}",
            f"failures         {len(self.failures)}",
        ]
        lines += [f"  - {text}" for text in self.failures[:30]]
        if len(self.failures) > 30:
            lines.append(f"  ... and {len(self.failures) - 30} more")
        return "\n".join(lines)


def _counts(counter: collections.Counter) -> str:
    return ", ".join(f"{key} {count}" for key, count in counter.most_common()) or "-"


class Fuzzer:
    """One socket on a thread at a time: sends batches, checks the answers, reconnects."""

    def __init__(
        self, server: Daphne, cookie: str, thread_ids: list[str], tally: Tally, timeout: float
    ) -> None:
        self.server, self.cookie, self.thread_ids = server, cookie, thread_ids
        self.tally, self.timeout = tally, timeout
        self.ws: ClientConnection | None = None

    async def open(self, thread_id: str | None = None) -> None:
        """A socket on one of the threads, read up to its `ready`."""
        self.ws = await connect(
            f"{self.server.ws_url}/ws/threads/{thread_id or self.thread_ids[0]}/",
            origin=self.server.url,
            additional_headers={"Cookie": self.cookie},
            compression=None,
            proxy=None,
            ping_interval=None,
            max_size=None,
        )
        first = json.loads(await asyncio.wait_for(self.ws.recv(), self.timeout))
        if first.get("type") != "ready":
            self.tally.fail(f"the first frame of a socket is not `ready`: {first}")

    async def reopen(self, rng: random.Random) -> None:
        await self.close()
        self.tally.reconnects += 1
        await self.open(rng.choice(self.thread_ids))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def send(self, frame: Frame) -> None:
        self.tally.sent[frame.kind] += 1
        self.tally.sent_bytes[frame.kind] += len(frame.payload)
        if frame.binary:
            await self.ws.send(frame.payload, text=False)
        else:
            await self.ws.send(frame.payload, text=True)

    async def batch(self, frames: list[Frame], rng: random.Random) -> bool:
        """Send the frames without reading, then check the heartbeat and the answers; whether
        the heartbeat was answered (if not, the socket is opened again)."""
        try:
            for frame in frames:
                await self.send(frame)
            await self.check(frames)
            return True
        except ConnectionClosed:
            self.closed(frames)
        except TimeoutError:
            self.tally.fail(
                f"no heartbeat within {self.timeout} s after {_which(frames)}; reconnecting"
            )
        await self.reopen(rng)
        return False

    async def check(self, frames: list[Frame]) -> None:
        """A heartbeat, read up to its answer: every frame answered at once must be, by then."""
        expect = [frame.expect for frame in frames]
        heartbeats = 1 + expect.count("heartbeat")
        owed = expect.count("answer") + expect.count("heartbeat")
        await self.ws.send(HEARTBEAT)
        answers = -1  # the heartbeat's own answer
        while heartbeats:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), self.timeout))
            self.tally.see(frame)
            if frame.get("type") in ANSWER_TYPES and "message_id" not in frame:
                answers += 1
            if frame.get("type") == "heartbeat":
                heartbeats -= 1
        self.tally.heartbeats += 1
        if answers < owed:
            self.tally.fail(f"{owed - answers} of {owed} frames got no answer: {_which(frames)}")

    def closed(self, frames: list[Frame]) -> None:
        """Count a close; only a protocol close after a frame past the limits, or a slow
        reader's after a flood, is expected."""
        code = self.ws.close_code or 1006
        self.tally.closes[code] += 1
        self.tally.events.append((time.time(), f"the close {code} that followed {_which(frames)}"))
        provoked = any(frame.expect == "close" for frame in frames)
        expected = (provoked and code in PROTOCOL_CLOSES) or (
            len(frames) > 1 and code == SLOW_READER
        )
        if code == 1011 or not expected:
            reason = self.ws.close_reason or ""
            self.tally.fail(f"closed with {code} {reason!r} after {_which(frames)}")

    async def drain(self, seconds: float) -> None:
        """Read and count whatever comes for that long."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.tally.see(json.loads(await asyncio.wait_for(self.ws.recv(), left)))
            except TimeoutError:
                return


def _which(frames: list[Frame]) -> str:
    if len(frames) == 1:
        return frames[0].describe()
    kinds = collections.Counter(frame.expect for frame in frames)
    return f"a flood of {len(frames)} frames ({_counts(kinds)}), first {frames[0].describe(60)}"


async def fuzz_frames(fuzzer: Fuzzer, rng: random.Random, frames: int, flood_share: float) -> None:
    """The main run: generated frames one at a time, and floods, each checked."""
    try:
        await fuzzer.open()
        for item in plan(rng, frames, flood_share):
            await fuzzer.batch(flood(rng, item) if item else [generate(rng)], rng)
        fuzzer.tally.final_heartbeat = await fuzzer.batch([], rng)
    except (OSError, InvalidStatus, ConnectionClosed, TimeoutError) as exc:
        fuzzer.tally.fail(f"the fuzz stopped: a socket could not be opened: {exc!r}")
    finally:
        await fuzzer.close()


async def fuzz_handshakes(server: Daphne, cookie: str, thread_id: str, tally: Tally) -> None:
    """Odd handshakes: each ends in a refusal or a close code, never a 5xx or 1011."""
    own = f"{server.ws_url}/ws/threads/{thread_id}/"
    cases = {
        "unknown thread": (f"{server.ws_url}/ws/threads/{uuid.uuid4()}/", server.url, cookie),
        "not a uuid": (f"{server.ws_url}/ws/threads/{quote('1 OR 1=1;é😀')}/", server.url, cookie),
        "huge id": (f"{server.ws_url}/ws/threads/{'9' * 4000}/", server.url, cookie),
        "no cookie": (own, server.url, None),
        "bad cookie": (own, server.url, "sessionid=garbage; csrftoken=%%;;=="),
        "foreign origin": (own, "http://evil.example", cookie),
        "no origin": (own, None, cookie),
        "unrouted path": (f"{server.ws_url}/ws/nowhere/", server.url, cookie),
    }
    for name, (url, origin, cookies) in cases.items():
        headers = {"Cookie": cookies} if cookies else {}
        tally.events.append((time.time(), f"handshake {name!r} ({url[:120]})"))
        try:
            async with connect(
                url, origin=origin, additional_headers=headers, proxy=None, open_timeout=10
            ) as ws:
                try:
                    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    tally.handshakes[f"opened ({first.get('type')})"] += 1
                except ConnectionClosed:
                    tally.handshakes[f"close {ws.close_code}"] += 1
                    if ws.close_code == 1011:
                        tally.fail(f"handshake {name!r} ({url[:120]}) closed with 1011")
        except InvalidStatus as exc:
            status = exc.response.status_code
            tally.handshakes[f"http {status}"] += 1
            tally.http(f"handshake {name!r} ({url[:120]})", status)


async def fuzz_limited_flood(
    server: Daphne,
    cookie: str,
    thread_id: str,
    tally: Tally,
    size: int,
    rng: random.Random,
    timeout: float,
) -> None:
    """A flood on a process with the default command limit; a heartbeat answers afterwards."""
    fuzzer = Fuzzer(server, cookie, [thread_id], Tally(), timeout)
    await fuzzer.open()
    frames = flood(rng, size, heartbeats=False)
    try:
        for frame in frames:
            await fuzzer.send(frame)
        # Over the limit commands are dropped, one `rate_limited` a second: let it refill.
        await fuzzer.drain(2.0)
        for _ in range(3):
            await fuzzer.ws.send(HEARTBEAT)
            deadline = time.monotonic() + 2.0
            while (left := deadline - time.monotonic()) > 0:
                try:
                    frame = json.loads(await asyncio.wait_for(fuzzer.ws.recv(), left))
                except TimeoutError:
                    break
                fuzzer.tally.see(frame)
                if frame.get("type") == "heartbeat":
                    tally.limited["heartbeat answered"] += 1
                    return
            tally.limited["heartbeat retried"] += 1
        tally.fail(f"no heartbeat answered after a flood of {size} under the command limit")
    except ConnectionClosed:
        code = fuzzer.ws.close_code or 1006
        tally.closes[code] += 1
        tally.fail(f"closed with {code} during a flood of {size} under the command limit")
    finally:
        tally.sent["limited_flood"] += fuzzer.tally.sent["flood"]
        tally.sent_bytes["limited_flood"] += fuzzer.tally.sent_bytes["flood"]
        for code, count in fuzzer.tally.errors.items():
            tally.limited[f"error {code}"] += count
        tally.failures += fuzzer.tally.failures
        await fuzzer.close()


def scan_log(server: Daphne, offset: int, tally: Tally) -> None:
    """Count and report each failure daphne logged since `offset`: its log record, innermost
    frames, exception, and the socket close just before it (the frame that likely caused it)."""
    text = server.log.read_bytes()[offset:].decode(errors="replace")
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not any(marker in line for marker in LOG_FAILURES):
            continue
        # A logged exception: its record is the line before the traceback.
        if line.startswith("Traceback") and number >= 2 and _logged_at(lines[number - 2]):
            line = lines[number - 2]
        if number < len(lines) and lines[number].startswith("Traceback"):
            number += 1
        block = []
        while number < len(lines) and lines[number][:1] in (" ", ""):
            block.append(lines[number])
            number += 1
        ending = lines[number] if number < len(lines) else ""
        where = [entry.strip() for entry in block if entry.strip().startswith("File")][-2:]
        details = [*where, ending.strip()[:300]]
        if (at := _logged_at(line)) is not None:
            near = [event for event in tally.events if at - 2 <= event[0] <= at + 0.5]
            if near:
                when, what = min(near, key=lambda event: abs(event[0] - at))
                details.append(f"nearest event ({when - at:+.2f} s): {what}")
        tally.log_lines += 1
        tally.fail(f"{server.log.name}: {line.strip()[:300]}\n      " + "\n      ".join(details))


def _logged_at(line: str) -> float | None:
    """The time of a log record (`2026-01-02 03:04:05,678 LEVEL ...`, local time), or None."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def _start(env: dict[str, str]) -> tuple[Daphne, int]:
    server = Daphne(env)
    offset = server.log.stat().st_size if server.log.exists() else 0
    return server.start(), offset


def run(
    *,
    stub_url: str,
    var_dir: Path,
    frames: int,
    seed: int,
    flood_share: float = 0.25,
    limited_flood: int = 300,
    timeout: float = 15.0,
    prepare: Callable[[dict[str, str], dict[str, str]], None] = prepare,
) -> Tally:
    """Fuzz a fresh site with the stub as its model: the frames, the handshakes, then a flood
    on a second process with the default limits; both processes' logs are checked. `prepare`
    migrates the site's database and makes its user (the tests pass a faster one)."""
    tally = Tally()
    rng = random.Random(seed)
    env = server_env(
        AGENT_PROVIDER="compatible",
        AGENT_MODEL="stub-model",
        OPENAI_BASE_URL=stub_url,
        OPENAI_API_KEY="test-key",
        CHAT_VAR_DIR=str(var_dir),
        **NO_USER_LIMITS,
    )
    prepare(env, {USER: PASSWORD})
    started = time.monotonic()
    server, offset = _start(env)
    try:
        client = login(server.url, USER, PASSWORD)
        threads = [client.post("/api/threads/", json={"title": f"fuzz {n}"}) for n in range(2)]
        for answer in threads:
            tally.http("POST /api/threads/", answer.status_code)
        thread_ids = [answer.json()["id"] for answer in threads]
        cookie = cookie_header(client)
        fuzzer = Fuzzer(server, cookie, thread_ids, tally, timeout)
        fuzz_started = time.monotonic()
        asyncio.run(fuzz_frames(fuzzer, rng, frames, flood_share))
        tally.fuzz_seconds = time.monotonic() - fuzz_started
        asyncio.run(fuzz_handshakes(server, cookie, thread_ids[0], tally))
        tally.http("GET /healthz after the fuzz", client.get("/healthz").status_code)
    finally:
        server.stop()
        scan_log(server, offset, tally)
    if limited_flood:
        limited = {k: v for k, v in env.items() if k not in NO_USER_LIMITS}
        server, offset = _start(limited)
        try:
            asyncio.run(
                fuzz_limited_flood(
                    server, cookie, thread_ids[1], tally, limited_flood, rng, timeout
                )
            )
        finally:
            server.stop()
            scan_log(server, offset, tally)
    tally.seconds = time.monotonic() - started
    return tally


def main(argv: list[str] | None = None) -> None:
    """Run the fuzz with its own stub, print the table, exit 1 on any failure."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.fuzz_ws",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--frames", type=int, default=10_000, help="generated frames to send")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flood-share", type=float, default=0.25, help="of frames, in floods")
    parser.add_argument(
        "--limited-flood",
        type=int,
        default=300,
        help="frames of the flood under the default command limit (0: none)",
    )
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds for an answer")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = parser.parse_args(argv)

    var_dir = Path(tempfile.mkdtemp(prefix="fuzz-ws-"))
    with StubServer(api_key="test-key") as stub:
        tally = run(
            stub_url=stub.url,
            var_dir=var_dir,
            frames=args.frames,
            seed=args.seed,
            flood_share=args.flood_share,
            limited_flood=args.limited_flood,
            timeout=args.timeout,
        )
    print(f"WebSocket fuzz, seed {args.seed}")
    print(tally.report())
    if args.keep or tally.failures:
        print(f"database and daphne logs kept in {var_dir}")
    else:
        shutil.rmtree(var_dir, ignore_errors=True)
    sys.exit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
