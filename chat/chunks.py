"""A Chat Completions stream read for less CPU per token, under the Agents SDK's own model.

The SDK's `OpenAIChatCompletionsModel` builds the request, runs the agent loop and turns chunks
into response events; this keeps all of that and replaces only how the openai client reads the
provider's stream, which cost a reply most of its CPU per token:

- chunks are parsed by pydantic's compiled validator (about 4 µs a chunk here) instead of the
  openai client's generic `construct_type` (about 50 µs); a chunk it rejects (an unusual
  compatible server) falls back to the client's own lenient construction;
- the text-only chunks that arrived while the agent handled the previous one are merged into
  one, so that when the process is busy and the provider's chunks queue up, the agent loop
  handles one chunk per turn instead of one per token. A quiet process gets one chunk at a
  time: nothing is ever held back to be merged.

And the request goes out without the openai client's generic request transform
(`LeanCompletions`), which walks every message and every tool's JSON schema against the
params' type hints: a tenth of a burst of starts' CPU here, for what is an identity on Chat
Completions params (they declare no aliases and no formats).

Errors keep the openai client's types (a status error is raised by the request itself; an
`error` event, a timeout or a dropped connection while reading map as the client maps them).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import pydantic
from agents import OpenAIChatCompletionsModel
from openai import APIConnectionError, APIError, APITimeoutError, AsyncOpenAI, AsyncStream
from openai._base_client import make_request_options
from openai._httpx2 import request_exceptions, timeout_exceptions  # as the client maps them
from openai._models import construct_type
from openai._types import NOT_GIVEN, Omit
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk


def lean_client(client: AsyncOpenAI) -> AsyncOpenAI:
    """`client`, its `chat.completions.create` sending the request as given (`LeanCompletions`)."""
    client.chat.__dict__["completions"] = LeanCompletions(client)  # over the cached_property
    return client


class LeanCompletions(AsyncCompletions):
    """`create` posting its params as they are when they are plain JSON values (what the
    Agents SDK passes: dicts, lists, strings, numbers), left out when not given; anything
    else (a pydantic model, a generator, a response format class) goes through the openai
    client's own `create` and its transform."""

    async def create(  # type: ignore[override]
        self,
        *,
        extra_headers: Any = None,
        extra_query: Any = None,
        extra_body: Any = None,
        timeout: Any = NOT_GIVEN,
        **params: Any,
    ) -> Any:
        body = {key: value for key, value in params.items() if _given(value)}
        if "model" not in body or "messages" not in body or not _plain(body):
            return await super().create(
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
                **params,
            )
        return await self._post(
            "/chat/completions",
            body=body,
            options=make_request_options(
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
                security={"bearer_auth": True},
            ),
            cast_to=ChatCompletion,
            stream=bool(body.get("stream")),
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


def _given(value: Any) -> bool:
    return not isinstance(value, Omit) and value is not NOT_GIVEN


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Whether `value` is JSON as it is: what the transform would send unchanged."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return False


class LeanChatCompletionsModel(OpenAIChatCompletionsModel):
    """The SDK's Chat Completions model, reading its stream with `ChunkStream`."""

    async def _fetch_response(self, *args: Any, **kwargs: Any) -> Any:
        fetched = await super()._fetch_response(*args, **kwargs)
        if isinstance(fetched, tuple):  # streaming: (the response shell, the openai stream)
            response, stream = fetched
            return response, ChunkStream(stream, on_finish=self._finished)
        return fetched

    def _finished(self, reason: str) -> None:
        """A turn's `finish_reason`, which the SDK does not surface (`length`: cut at
        max_tokens); a subclass keeps it."""


class ChunkStream:
    """The chunks of an openai `AsyncStream`'s HTTP response, parsed, and merged when they
    queue up."""

    def __init__(self, stream: Any, on_finish: Any = None) -> None:
        self._stream = stream
        self._on_finish = on_finish  # called with each choice's finish_reason as it comes
        self.response = stream.response  # the SDK reads the request id from its headers

    async def close(self) -> None:
        await self._stream.close()

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        # A reader task takes the body in as it comes; each turn here takes every block that
        # has arrived since the last (one, unless the process fell behind) and merges them.
        blocks: deque[bytes | BaseException | None] = deque()
        arrived = asyncio.Event()
        reader = asyncio.ensure_future(self._read(blocks, arrived))
        events = _SSE()
        try:
            while True:
                if not blocks:
                    arrived.clear()
                    await arrived.wait()
                merged: dict[str, Any] | None = None
                failure: BaseException | None = None
                while blocks and failure is None:
                    block = blocks.popleft()
                    if isinstance(block, BaseException):
                        failure = block
                        break
                    for data in events.feed(block) if block is not None else ["[DONE]"]:
                        if data.startswith("[DONE]"):
                            if merged is not None:
                                yield _chunk(merged)
                            await reader  # the rest of the body, so the connection is kept
                            return
                        chunk = json.loads(data)
                        if (failure := _error(chunk, self.response.request)) is not None:
                            break
                        if self._on_finish is not None:
                            _tell_finish(chunk, self._on_finish)
                        if merged is not None and _merge(merged, chunk):
                            continue
                        if merged is not None:
                            yield _chunk(merged)
                        merged = chunk
                # What came before a failure is the agent's before the failure is.
                if merged is not None:
                    yield _chunk(merged)
                if failure is not None:
                    raise failure
        finally:
            reader.cancel()

    async def _read(self, blocks: deque, arrived: asyncio.Event) -> None:
        """Append the body's blocks, then None at its end (or the failure, as the openai
        client raises it)."""
        try:
            async for block in self.response.aiter_bytes():
                blocks.append(block)
                arrived.set()
            blocks.append(None)
        except timeout_exceptions() as exc:
            blocks.append(_caused(APITimeoutError(request=self.response.request), exc))
        except request_exceptions() as exc:
            blocks.append(_caused(APIConnectionError(request=self.response.request), exc))
        except Exception as exc:
            blocks.append(exc)
        arrived.set()


def _tell_finish(chunk: Any, on_finish: Any) -> None:
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
            on_finish(choice["finish_reason"])


def _caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def _chunk(data: dict[str, Any]) -> ChatCompletionChunk:
    try:
        return ChatCompletionChunk.model_validate(data)
    except pydantic.ValidationError:
        return construct_type(type_=ChatCompletionChunk, value=data)


def _text_delta(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """The delta of a chunk that carries text and nothing else (no tool call, no end, no
    usage), else None."""
    choices = chunk.get("choices")
    if chunk.get("usage") or not isinstance(choices, list) or len(choices) != 1:
        return None
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("logprobs"):
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or not isinstance(delta.get("content"), str):
        return None
    if any(value is not None for key, value in delta.items() if key not in ("content", "role")):
        return None
    return delta


def _merge(into: dict[str, Any], chunk: dict[str, Any]) -> bool:
    """Append `chunk`'s text to `into` when both carry text only (and the same role)."""
    first, then = _text_delta(into), _text_delta(chunk)
    if first is None or then is None or then.get("role") not in (None, first.get("role")):
        return False
    first["content"] += then["content"]
    return True


def _error(data: Any, request: Any) -> APIError | None:
    """An `error` object in the stream, as the openai client raises it."""
    if not isinstance(data, dict) or not data.get("error"):
        return None
    error = data["error"]
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return APIError(message=message, request=request, body=error)


class _SSE:
    """Server-sent events' `data` from bytes as they arrive (lines end in LF, CRLF or CR)."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[str] = []

    def feed(self, block: bytes) -> list[str]:
        """The data of every event that `block` completes."""
        text = self._pending + block
        lines = text.splitlines(keepends=True)
        self._pending = b""
        if lines and not lines[-1].endswith(b"\n"):
            # An unfinished line (or one whose CR may be followed by a LF) waits for more.
            self._pending = lines.pop()
        complete = []
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode()
            if not line:
                if self._data:
                    complete.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            # Other fields (event, id, retry) and comments carry nothing a chunk needs.
        return complete
