"""Scripted OpenAI-compatible HTTP stub server for tests and benchmarks (stdlib only).

A development tool, not part of the product: it serves loopback only, and run as a command it
answers only the key it is given (or prints the random one it made, as ``STUB_API_KEY=``),
control endpoints (``/_stub/...``) included. Recorded requests never show the key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import ipaddress
import json
import os
import re
import secrets
import signal
import string
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self

STUB_MODEL = "stub-model"
"""Model id listed by ``GET /v1/models`` and echoed when a request names no model."""

_LOREM = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed")
# Bounded so long benchmark runs cannot grow memory without limit.
_MAX_RECORDED = 10_000
# The default backlog (100) overflows when a benchmark opens 500 connections at once.
_BACKLOG = 2048
_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
}
_FAILURES = ("error_after", "drop_after", "stall_after")

# Timestamp tokens (opt-in, for benchmarks): 4 symbols of a 64-symbol alphabet holding the
# emission time in 100 µs units modulo 64**4 (28 min). Four characters is the length of an
# average English model token, so the product's character-based coalescing (BUFFER_SIZE)
# treats them as it treats real text; the fixed width lets a client split a coalesced chunk
# back into tokens, and it unwraps each one with its own receive time.
#
# Longer tokens (``token_chars`` > 4, opt-in) are a space, the 4 timestamp symbols, then the
# token's index in its reply in as many symbols as are left (base 64, modulo): a client can
# then check each token's place, not only its time. Seven characters (" " + 4 + 2) is the
# size at which the product's coalescing by BUFFER_SIZE=5 gives one frame per token, like a
# relay that sends one event per token, so the two are compared frame for frame.
TIMESTAMP_ALPHABET = string.digits + string.ascii_letters + "-_"
TIMESTAMP_WIDTH = 4
TIMESTAMP_UNIT_NS = 100_000
TIMESTAMP_WRAP = len(TIMESTAMP_ALPHABET) ** TIMESTAMP_WIDTH
_TIMESTAMP_VALUES = {symbol: value for value, symbol in enumerate(TIMESTAMP_ALPHABET)}


def lorem_tokens(count: int) -> list[str]:
    """The default reply of ``--reply-tokens count``: words of lorem ipsum, spaced."""
    words = [_LOREM[i % len(_LOREM)] for i in range(count)]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _symbols(value: int, width: int) -> str:
    """``value`` modulo 64**width in ``width`` symbols of the alphabet, most significant first."""
    symbols = []
    for _ in range(width):
        value, digit = divmod(value, len(TIMESTAMP_ALPHABET))
        symbols.append(TIMESTAMP_ALPHABET[digit])
    return "".join(reversed(symbols))


def _value(symbols: str, text: str) -> int:
    value = 0
    for symbol in symbols:
        if symbol not in _TIMESTAMP_VALUES:
            raise ValueError(f"not timestamp tokens: {text[:40]!r}")
        value = value * len(TIMESTAMP_ALPHABET) + _TIMESTAMP_VALUES[symbol]
    return value


def timestamp_token(now_ns: int, index: int = 0, token_chars: int = TIMESTAMP_WIDTH) -> str:
    """The token that says it was emitted at ``now_ns`` (``time.time_ns()``); longer than 4
    characters, it is ``" "`` + the time + the token's ``index`` in its reply."""
    stamp = _symbols(now_ns // TIMESTAMP_UNIT_NS, TIMESTAMP_WIDTH)
    if token_chars == TIMESTAMP_WIDTH:
        return stamp
    if token_chars < TIMESTAMP_WIDTH + 1:
        raise ValueError(f"token_chars must be {TIMESTAMP_WIDTH} or more than that")
    return " " + stamp + _symbols(index, token_chars - TIMESTAMP_WIDTH - 1)


def _split(text: str, token_chars: int) -> list[str]:
    if not text or len(text) % token_chars:
        raise ValueError(f"not timestamp tokens: {text[:40]!r}")
    tokens = [text[start : start + token_chars] for start in range(0, len(text), token_chars)]
    if token_chars > TIMESTAMP_WIDTH and any(token[0] != " " for token in tokens):
        raise ValueError(f"not timestamp tokens: {text[:40]!r}")
    return tokens


def timestamp_tokens_times_ns(
    text: str, received_ns: int, token_chars: int = TIMESTAMP_WIDTH
) -> list[int]:
    """When each timestamp token of ``text`` was emitted, ``text`` being received at
    ``received_ns``; ``ValueError`` if it is not a run of timestamp tokens.

    Exact to the 100 µs unit (the middle of it is returned) for tokens younger than the
    wrap-around period, 28 minutes.
    """
    received_units = received_ns // TIMESTAMP_UNIT_NS
    start = 0 if token_chars == TIMESTAMP_WIDTH else 1  # longer tokens begin with a space
    times = []
    for token in _split(text, token_chars):
        units = _value(token[start : start + TIMESTAMP_WIDTH], text)
        age_units = (received_units - units) % TIMESTAMP_WRAP
        times.append((received_units - age_units) * TIMESTAMP_UNIT_NS + TIMESTAMP_UNIT_NS // 2)
    return times


def timestamp_tokens_indexes(text: str, token_chars: int) -> list[int]:
    """The index in its reply (modulo 64**(token_chars - 5)) of each token of ``text``, a run
    of timestamp tokens longer than 5 characters; ``ValueError`` if it is not one."""
    if token_chars <= TIMESTAMP_WIDTH + 1:
        raise ValueError(f"tokens of {token_chars} characters carry no index")
    return [_value(token[TIMESTAMP_WIDTH + 1 :], text) for token in _split(text, token_chars)]


@dataclass
class Script:
    """A scripted reply for requests whose last user message contains ``match``."""

    match: str = ""
    tokens: list[str] = field(default_factory=list)
    delay_ms: float | None = None  # None: the server-wide default delay
    first_token_delay_ms: float = 0.0
    status: int | None = None
    error_after: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 600.0
    usage: dict[str, int] | None = None
    times: int | None = None
    # Rounds of tool calls, each a list of {"name", "arguments" (dict or JSON text), "id"?}:
    # a request is answered with round i when it holds i rounds of tool results after its
    # last user message, and with ``tokens`` once every round has its results.
    tool_calls: list[list[dict[str, Any]]] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Script:
        """Build a script from its JSON form, rejecting unknown keys so typos fail loudly."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown script fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        return "close" not in conn if self.version == "HTTP/1.1" else "keep-alive" in conn

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return self.body.decode("utf-8", "replace")


class _BadRequest(Exception):
    pass


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content-part form: [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _phrase(status: int) -> str:
    return HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    fallback = "server_error" if status >= 500 else "invalid_request_error"
    err_type, code = _ERROR_KINDS.get(status, (fallback, fallback))
    text = message or f"Stub provider scripted error: {status} {_phrase(status)}."
    return {"error": {"message": text, "type": err_type, "param": None, "code": code}}


def _head(status: int, content_type: str, keep: bool, length: int | None = None) -> bytes:
    # Without a Content-Length the body is chunked, which is what keeps streams reusable.
    size = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    lines = [
        f"HTTP/1.1 {status} {_phrase(status)}",
        f"content-type: {content_type}",
        size,
        "cache-control: no-cache",
        f"x-request-id: req_{uuid.uuid4().hex}",
        f"connection: {'keep-alive' if keep else 'close'}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send_json(writer: asyncio.StreamWriter, status: int, payload: Any, keep: bool) -> bool:
    data = json.dumps(payload).encode()
    writer.write(_head(status, "application/json", keep, len(data)) + data)
    await writer.drain()
    return keep


async def _send_event(writer: asyncio.StreamWriter, payload: Any) -> None:
    data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    writer.write(b"%x\r\n%s\n\n\r\n" % (len(data) + 2, data))
    await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed an idle keep-alive connection
    except asyncio.LimitOverrunError as exc:
        raise _BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise _BadRequest("malformed request line") from exc
    headers: dict[str, str] = {}
    for line in filter(None, lines[1:]):
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailers
        body = b"".join(parts)
    elif (length := headers.get("content-length", "0")).isdigit():
        body = await reader.readexactly(int(length))
    else:
        raise _BadRequest("bad content-length")
    return _Request(method.upper(), target, version.upper(), headers, body)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StubServer:
    """OpenAI-compatible stub server on loopback, driven by registered ``Script`` objects."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_ms: float = 0,
        reply_tokens: int | None = None,
        timestamp_tokens: bool = False,
        token_chars: int = TIMESTAMP_WIDTH,
        api_key: str | None = None,
    ) -> None:
        """Configure the server; nothing listens until ``start()`` (or ``open()``).

        ``host`` must be a loopback address. With ``api_key``, every request must carry
        ``Authorization: Bearer <api_key>`` (401 otherwise).

        ``timestamp_tokens`` replaces the text of every streamed token by
        ``timestamp_token(time of sending)``, for benchmarks that time each token's trip;
        ``token_chars`` sets their length (see ``timestamp_token``).
        """
        if not _loopback(host):
            raise ValueError(f"The stub serves loopback only, not {host!r}.")
        self.host, self.port = host, port
        self.api_key = api_key
        self.delay_ms, self.reply_tokens = delay_ms, reply_tokens
        self.timestamp_tokens = timestamp_tokens
        timestamp_token(0, 0, token_chars)  # a bad length fails here, not mid-stream
        self.token_chars = token_chars
        self.chatkit_status: int | None = None
        # A threading lock because tests script the server from outside its loop thread.
        self._lock = threading.Lock()
        self._scripts: list[Script] = []
        self._recorded: deque[dict[str, Any]] = deque(maxlen=_MAX_RECORDED)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL ending in ``/v1``, i.e. the value for ``OPENAI_BASE_URL``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Copy of recorded requests: method, path, headers, body, received_at."""
        with self._lock:
            return copy.deepcopy(list(self._recorded))

    def script(self, match: str = "", **fields: Any) -> Script:
        """Register a script; the most recently registered matching script wins."""
        return self.add_script(Script(match=match, **fields))

    def add_script(self, script: Script | dict[str, Any]) -> Script:
        """Register a ``Script`` or its JSON-dict form."""
        script = Script.from_dict(script) if isinstance(script, dict) else script
        with self._lock:
            self._scripts.append(script)
        return script

    def reset(self) -> None:
        """Forget all scripts, recorded requests and any scripted ChatKit status."""
        with self._lock:
            self._scripts.clear()
            self._recorded.clear()
            self.chatkit_status = None

    def start(self) -> Self:
        """Serve from a daemon thread with its own event loop; return once listening."""
        if self._thread is not None:
            return self
        ready, failure = threading.Event(), []
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            try:
                loop.run_until_complete(self.open())
            except OSError as exc:  # e.g. port in use: re-raised in the caller's thread
                failure.append(exc)
            finally:
                ready.set()
            if self._server is not None:
                loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="stub-provider", daemon=True)
        self._thread.start()
        ready.wait()
        if self._server is None:
            self._thread.join()
            self._loop = self._thread = None
            raise failure[0] if failure else RuntimeError("stub provider failed to start")
        return self

    def stop(self) -> None:
        """Close the listener and every open (including stalled) connection."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    async def open(self) -> None:
        """Start listening on the running event loop (for callers already inside asyncio)."""
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, backlog=_BACKLOG
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and abort open connections; run on the server's own loop."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        aborted = False
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    await _send_json(writer, 400, _error_body(400, str(exc)), False)
                    break
                if request is None or not await self._dispatch(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request or mid-stream
        except asyncio.CancelledError:
            aborted = True  # stop(): drop the socket now rather than flush to a stalled peer
        finally:
            self._tasks.discard(task)
            writer.transport.abort() if aborted else writer.close()

    async def _dispatch(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; return whether the connection may be reused."""
        keep, body, route = request.keep_alive, request.json(), (request.method, request.path)
        if self.api_key is not None and not secrets.compare_digest(
            request.headers.get("authorization", ""), f"Bearer {self.api_key}"
        ):
            return await _send_json(writer, 401, _error_body(401, "Incorrect API key."), keep)
        # Control traffic is not recorded so it never pollutes assertions on client requests.
        if request.path.startswith("/_stub/"):
            return await self._control(route, body, writer, keep)
        record = {"method": request.method, "path": request.target, "body": body}
        headers = dict(request.headers)
        if "authorization" in headers:
            headers["authorization"] = "Bearer <redacted>"
        record.update(headers=headers, received_at=time.time())
        with self._lock:
            self._recorded.append(record)
        body = body if isinstance(body, dict) else {}
        if route == ("POST", "/v1/chat/completions"):
            return await self._chat_completions(body, reader, writer, keep)
        if route == ("POST", "/v1/responses"):
            return await self._responses(body, reader, writer, keep)
        if route == ("GET", "/v1/models"):
            model = {"id": STUB_MODEL, "object": "model", "created": 0, "owned_by": "stub"}
            return await _send_json(writer, 200, {"object": "list", "data": [model]}, keep)
        if route == ("POST", "/v1/chatkit/sessions"):
            status = self.chatkit_status
            if status is not None and status >= 400:
                return await _send_json(writer, status, _error_body(status), keep)
            return await _send_json(writer, 200, _chatkit_session(body), keep)
        message = f"Invalid URL ({request.method} {request.path})"
        return await _send_json(writer, 404, _error_body(404, message), keep)

    async def _control(
        self, route: tuple[str, str], body: Any, writer: asyncio.StreamWriter, keep: bool
    ) -> bool:
        if route == ("GET", "/_stub/requests"):
            return await _send_json(writer, 200, self.requests, keep)
        if route == ("POST", "/_stub/reset"):
            self.reset()
            return await _send_json(writer, 200, {"ok": True}, keep)
        if route == ("POST", "/_stub/chatkit") and isinstance(body, dict):
            self.chatkit_status = body.get("status")
            return await _send_json(writer, 200, {"ok": True}, keep)
        if route == ("POST", "/_stub/scripts") and isinstance(body, dict):
            try:
                script = self.add_script(body)
            except (TypeError, ValueError) as exc:
                return await _send_json(writer, 400, _error_body(400, str(exc)), keep)
            return await _send_json(writer, 200, dataclasses.asdict(script), keep)
        return await _send_json(writer, 404, _error_body(404, f"Unknown control {route}"), keep)

    def _pick_script(self, prompt: str) -> Script:
        with self._lock:
            for script in reversed(self._scripts):
                if script.match in prompt:
                    if script.times is not None:
                        script.times -= 1
                        if script.times <= 0:
                            self._scripts.remove(script)
                    return script
        if self.reply_tokens is not None:
            return Script(tokens=lorem_tokens(self.reply_tokens))
        return Script(tokens=re.findall(r"\s*\S+", "Echo: " + prompt))

    def _script_for(self, messages: list[Any]) -> Script:
        """The script for a request: chosen by its last user message (Chat or Responses form)."""
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return self._pick_script(_message_text(users[-1]) if users else "")

    def _delay(self, script: Script) -> float:
        """Seconds between tokens: the script's, else the server's default."""
        return (self.delay_ms if script.delay_ms is None else script.delay_ms) / 1000

    async def _chat_completions(
        self,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep: bool,
    ) -> bool:
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        script = self._script_for(messages)
        if script.status is not None:
            return await _send_json(writer, script.status, _error_body(script.status), keep)
        tokens = _within(script.tokens, body.get("max_completion_tokens") or body.get("max_tokens"))
        # A real model that stops at max_tokens says so.
        finish = "length" if len(tokens) < len(script.tokens) else "stop"
        delay = self._delay(script)
        first_delay = script.first_token_delay_ms / 1000
        usage = {
            "prompt_tokens": sum(len(_message_text(m).split()) for m in messages),
            "completion_tokens": len(tokens),
            **(script.usage or {}),
        }
        # A scripted count is what the model wrote, and a real model stops at max_tokens.
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit >= 0:
            usage["completion_tokens"] = min(usage["completion_tokens"], limit)
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        cut, failure = _cut(script)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or STUB_MODEL,
        }

        if not body.get("stream"):
            await asyncio.sleep(first_delay + delay * max(cut - 1, 0))
            if failure == "error_after":
                return await _send_json(writer, 500, _error_body(500), keep)
            if failure == "stall_after":
                await _stall(reader, script.stall_seconds)
            if failure is not None:
                return False
            message = {"role": "assistant", "content": "".join(tokens), "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            completion = {**base, "object": "chat.completion", "choices": [choice]}
            return await _send_json(writer, 200, {**completion, "usage": usage}, keep)

        calls = _tool_round(script, _chat_rounds_done(messages))
        if calls is not None and not body.get("stream"):
            await asyncio.sleep(first_delay)
            tool_calls = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {k: c[k] for k in ("name", "arguments")},
                }
                for c in calls
            ]
            message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
            completion = {**base, "object": "chat.completion", "choices": [choice]}
            return await _send_json(writer, 200, {**completion, "usage": usage}, keep)

        if (body.get("stream_options") or {}).get("include_usage"):
            base["usage"] = None  # OpenAI sends usage: null on every chunk but the last

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        if calls is not None:
            writer.write(_head(200, "text/event-stream; charset=utf-8", keep))
            await _send_event(writer, chunk({"role": "assistant", "content": None}))
            await asyncio.sleep(first_delay)
            for index, call in enumerate(calls):
                opening = {"index": index, "id": call["id"], "type": "function"}
                opening["function"] = {"name": call["name"], "arguments": ""}
                await _send_event(writer, chunk({"tool_calls": [opening]}))
                for piece in _pieces(call["arguments"]):
                    await asyncio.sleep(delay)
                    more = {"index": index, "function": {"arguments": piece}}
                    await _send_event(writer, chunk({"tool_calls": [more]}))
            await _send_event(writer, chunk({}, "tool_calls"))
            if "usage" in base:
                await _send_event(writer, {**base, "choices": [], "usage": usage})
            await _send_event(writer, b"[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return keep

        writer.write(_head(200, "text/event-stream; charset=utf-8", keep))
        await _send_event(writer, chunk({"role": "assistant", "content": ""}))
        for index, token in enumerate(tokens[:cut]):
            await asyncio.sleep(first_delay if index == 0 else delay)
            if self.timestamp_tokens:
                token = timestamp_token(time.time_ns(), index, self.token_chars)
            await _send_event(writer, chunk({"content": token}))
        if failure == "drop_after":
            return False  # the connection closes without the terminating chunk: that's the point
        if failure == "stall_after":
            await _stall(reader, script.stall_seconds)
            return False
        if failure == "error_after":
            message = "The server had an error while processing your request."
            error = {"message": message, "type": "server_error", "code": "server_error"}
            await _send_event(writer, {"error": error})
        else:
            await _send_event(writer, chunk({}, finish))
            if "usage" in base:
                await _send_event(writer, {**base, "choices": [], "usage": usage})
            await _send_event(writer, b"[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep

    async def _responses(
        self,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep: bool,
    ) -> bool:
        """OpenAI's Responses API, streamed: what the Agents SDK's `openai` provider speaks."""
        items = body.get("input") if isinstance(body.get("input"), list) else []
        if isinstance(body.get("input"), str):
            items = [{"role": "user", "content": body["input"]}]
        script = self._script_for(items)
        if script.status is not None:
            return await _send_json(writer, script.status, _error_body(script.status), keep)
        tokens = _within(script.tokens, body.get("max_output_tokens"))
        # Cut at max_output_tokens: the response ends `incomplete`, as OpenAI's does.
        ended: dict[str, Any] = {"status": "completed"}
        if len(tokens) < len(script.tokens):
            ended = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        delay = self._delay(script)
        cut, failure = _cut(script)
        text = "".join(tokens)
        item_id = f"msg_{uuid.uuid4().hex[:24]}"
        usage = {
            "input_tokens": sum(len(_message_text(m).split()) for m in items),
            "output_tokens": len(tokens),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        done_item = {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [part],
        }
        response = {
            "id": f"resp_{uuid.uuid4().hex[:24]}",
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model") or STUB_MODEL,
            "status": "in_progress",
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
        calls = _tool_round(script, _responses_rounds_done(items))
        call_items = [
            {
                "id": f"fc_{uuid.uuid4().hex[:24]}",
                "type": "function_call",
                "call_id": call["id"],
                "name": call["name"],
                "arguments": call["arguments"],
                "status": "completed",
            }
            for call in calls or []
        ]
        if not body.get("stream"):
            output = call_items if calls is not None else [done_item]
            completed = {**response, **ended, "output": output, "usage": usage}
            return await _send_json(writer, 200, completed, keep)
        sequence = iter(range(1_000_000))

        async def send(kind: str, **fields: Any) -> None:
            await _send_event(writer, {"type": kind, "sequence_number": next(sequence), **fields})

        if calls is not None:
            writer.write(_head(200, "text/event-stream; charset=utf-8", keep))
            await send("response.created", response=response)
            await asyncio.sleep(script.first_token_delay_ms / 1000)
            for index, item in enumerate(call_items):
                opening = {**item, "arguments": "", "status": "in_progress"}
                await send("response.output_item.added", output_index=index, item=opening)
                for piece in _pieces(item["arguments"]):
                    await asyncio.sleep(delay)
                    await send(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                await send(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
                await send("response.output_item.done", output_index=index, item=item)
            completed = {**response, "status": "completed", "output": call_items, "usage": usage}
            await send("response.completed", response=completed)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return keep

        at = {"item_id": item_id, "output_index": 0, "content_index": 0}
        writer.write(_head(200, "text/event-stream; charset=utf-8", keep))
        await send("response.created", response=response)
        await send(
            "response.output_item.added",
            output_index=0,
            item={**done_item, "status": "in_progress", "content": []},
        )
        await send("response.content_part.added", **at, part={**part, "text": ""})
        for index, token in enumerate(tokens[:cut]):
            await asyncio.sleep(script.first_token_delay_ms / 1000 if index == 0 else delay)
            await send("response.output_text.delta", **at, delta=token, logprobs=[])
        if failure == "drop_after":
            return False
        if failure == "stall_after":
            await _stall(reader, script.stall_seconds)
            return False
        if failure == "error_after":
            await send("error", code="server_error", message="The server had an error.", param=None)
        else:
            await send("response.output_text.done", **at, text=text, logprobs=[])
            await send("response.content_part.done", **at, part=part)
            await send("response.output_item.done", output_index=0, item=done_item)
            completed = {**response, **ended, "output": [done_item], "usage": usage}
            kind = "response.completed" if ended["status"] == "completed" else "response.incomplete"
            await send(kind, response=completed)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep


def _within(tokens: list[str], max_tokens: Any) -> list[str]:
    """The script's tokens cut at the request's max_tokens, as a real model stops there."""
    return tokens[:max_tokens] if isinstance(max_tokens, int) and max_tokens >= 0 else tokens


def _tool_round(script: Script, done: int) -> list[dict[str, Any]] | None:
    """The tool calls to answer with, when the script has a round left after ``done``."""
    rounds = script.tool_calls or []
    if done >= len(rounds):
        return None
    return [
        {
            "id": call.get("id") or f"call_{uuid.uuid4().hex[:20]}",
            "name": call["name"],
            "arguments": call["arguments"]
            if isinstance(call.get("arguments"), str)
            else json.dumps(call.get("arguments") or {}),
        }
        for call in rounds[done]
    ]


def _after_last_user(items: list[Any]) -> list[dict[str, Any]]:
    items = [m for m in items if isinstance(m, dict)]
    last = max((i for i, m in enumerate(items) if m.get("role") == "user"), default=-1)
    return items[last + 1 :]


def _chat_rounds_done(messages: list[Any]) -> int:
    """Rounds of tool calls a Chat Completions request already holds (since its question)."""
    return sum(
        1
        for m in _after_last_user(messages)
        if m.get("role") == "assistant" and m.get("tool_calls")
    )


def _responses_rounds_done(items: list[Any]) -> int:
    """The same for a Responses request: runs of ``function_call`` items since the question."""
    rounds, previous = 0, None
    for item in _after_last_user(items):
        kind = item.get("type")
        if kind == "function_call" and previous != "function_call":
            rounds += 1
        previous = kind
    return rounds


def _pieces(text: str) -> list[str]:
    """JSON arguments in a few deltas, as a model streams them."""
    third = max(len(text) // 3, 1)
    return [text[i : i + third] for i in range(0, len(text), third)] or [""]


def _cut(script: Script) -> tuple[int, str | None]:
    """How many tokens go out, and the failure that follows them (the earliest one wins)."""
    cut, failure = len(script.tokens), None
    for name in _FAILURES:
        after = getattr(script, name)
        if after is not None and (failure is None or after < cut):
            cut, failure = min(after, len(script.tokens)), name
    return cut, failure


def _chatkit_session(body: dict[str, Any]) -> dict[str, Any]:
    workflow = body.get("workflow") if isinstance(body.get("workflow"), dict) else {}
    lifetime = (body.get("expires_after") or {}).get("seconds", 600)
    return {
        "id": f"cksess_{uuid.uuid4().hex}",
        "object": "chatkit.session",
        "client_secret": f"ek_{uuid.uuid4().hex}",
        "expires_at": int(time.time()) + int(lifetime),
        "status": "active",
        "user": body.get("user"),
        "workflow": {"id": workflow.get("id"), "version": workflow.get("version")},
        "rate_limits": {"max_requests_per_1_minute": 10},
        "max_requests_per_1_minute": 10,
    }


async def _stall(reader: asyncio.StreamReader, seconds: float) -> None:
    # Reading (and discarding) is how a hang-up by the client is noticed.
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass


def main(argv: list[str] | None = None) -> None:
    """Run in the foreground, print ``STUB_URL=...`` once listening, exit on SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m scripts.stub_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STUB_API_KEY"),
        help="the key clients must send (default: $STUB_API_KEY, else a random one, printed)",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--reply-tokens", type=int, default=None)
    parser.add_argument(
        "--timestamp-tokens",
        action="store_true",
        help="stream each token as its emission time (see timestamp_token), for benchmarks",
    )
    parser.add_argument(
        "--token-chars",
        type=int,
        default=TIMESTAMP_WIDTH,
        help="length of a timestamp token: more than 4 is a space, the time and the token's "
        "index (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    server = StubServer(
        args.host,
        args.port,
        args.delay_ms,
        args.reply_tokens,
        args.timestamp_tokens,
        args.token_chars,
        api_key=args.api_key or secrets.token_urlsafe(16),
    )

    async def serve() -> None:
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
        await server.open()
        print(f"STUB_URL={server.url}", flush=True)
        print(f"STUB_API_KEY={server.api_key}", flush=True)
        await stopping.wait()
        await server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
