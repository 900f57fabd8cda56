"""The agent and its provider: one OpenAI-API code path for OpenAI, any compatible server and
the embedded model.

`stream_reply()` yields what the OpenAI Agents SDK streams (text deltas, and the tool calls the
agent makes, as `ToolEvent`s) and maps every provider failure to a `ChatError` (errors.py)
that carries its error code and whether a retry may help. The agent's tools are tools.py's;
the embedded demo model gets none (it does not call them reliably).
"""

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
from agents import (
    Agent,
    AgentsException,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    set_tracing_disabled,
)
from django.conf import settings
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from chat import catalog, local_model, runtime, tools
from chat.chunks import LeanChatCompletionsModel, lean_client
from chat.errors import ChatError

logger = logging.getLogger(__name__)

LOCAL_MAX_TOKENS = 512
# Model turns a reply may take: each round of tool calls is one more.
MAX_TURNS = 10


async def _client(chosen: catalog.Model) -> openai.AsyncOpenAI:
    """The openai client for the model's provider, made once per event loop (runtime.py): an
    httpx pool must not be shared across loops (tests run many)."""
    per_loop = runtime.openai_clients()
    key = (chosen.kind, chosen.base_url, chosen.api_key)
    if key not in per_loop:
        if chosen.kind == "local":
            try:
                url = await asyncio.to_thread(local_model.base_url)
            except local_model.LocalModelUnavailable as exc:
                raise ChatError("provider_error", str(exc), recoverable=False) from exc
            per_loop[key] = lean_client(
                openai.AsyncOpenAI(base_url=url, api_key=local_model.api_key(), max_retries=0)
            )
        elif chosen.kind == "compatible" and not chosen.base_url:
            raise ChatError(
                "provider_error",
                f"Model {chosen.id}: provider {chosen.provider} has no address "
                "(OPENAI_BASE_URL, or AGENT_PROVIDER_<NAME>_BASE_URL).",
                recoverable=False,
            )
        else:
            # A compatible server may need no key at all; OpenAI itself always does.
            api_key = chosen.api_key or ("unused" if chosen.kind == "compatible" else None)
            if api_key is None:
                raise ChatError(
                    "provider_error",
                    f"Model {chosen.id}: provider openai needs OPENAI_API_KEY.",
                    recoverable=False,
                )
            per_loop[key] = lean_client(
                openai.AsyncOpenAI(api_key=api_key, base_url=chosen.base_url or None, max_retries=1)
            )
    return per_loop[key]


@dataclass
class Usage:
    """Output tokens a reply's model turns spent (as the provider reported them, else one
    per text delta), and the most they may add up to (`limit`: the reply's hold); input
    tokens (the provider's count, else a token per CHARS_PER_INPUT_TOKEN of what was sent)."""

    output_tokens: int | None = None
    limit: int | None = None
    input_tokens: int = 0
    # The last model turn ended at its token limit (Chat Completions' finish_reason
    # `length`, the Responses API's `incomplete` for max_output_tokens).
    truncated: bool = False

    def left(self) -> int | None:
        """Tokens the next turn may still ask for; None: no limit."""
        if self.limit is None:
            return None
        return self.limit - (self.output_tokens or 0)

    def add(self, tokens: int) -> None:
        self.output_tokens = (self.output_tokens or 0) + max(tokens, 0)

    def add_input(self, reported: int | None, sent: Any) -> None:
        """One turn's input: the provider's count, else an estimate from what was sent."""
        if reported is None:
            reported = -(-len(str(sent)) // CHARS_PER_INPUT_TOKEN)
        self.input_tokens += max(reported, 0)


CHARS_PER_INPUT_TOKEN = 4


class _Metered:
    """A model whose every turn asks for at most what is left of the reply's `Usage.limit`
    and adds what it spent: a reply that calls tools for ten turns spends its hold once, not
    ten times. With nothing left the next turn is not asked for: `quota_exceeded`."""

    metered: Usage | None = None

    def _finished(self, reason: str) -> None:
        if self.metered is not None:
            self.metered.truncated = reason == "length"

    def _within(self, model_settings: ModelSettings) -> ModelSettings:
        left = self.metered.left() if self.metered is not None else None
        if left is None:
            return model_settings
        if left <= 0:
            raise ChatError(
                "quota_exceeded",
                f"This reply spent the {self.metered.limit} tokens it may use "
                "(REPLY_MAX_TOKENS, or what was left of today's budget).",
                recoverable=False,
            )
        cap = model_settings.max_tokens
        return dataclasses.replace(model_settings, max_tokens=min(cap, left) if cap else left)

    async def get_response(self, system_instructions, input, model_settings, *args, **kwargs):
        response = await super().get_response(  # type: ignore[misc]
            system_instructions, input, self._within(model_settings), *args, **kwargs
        )
        if self.metered is not None:
            self.metered.truncated = False
            self.metered.add(response.usage.output_tokens if response.usage else 0)
            self.metered.add_input(response.usage.input_tokens if response.usage else None, input)
        return response

    async def stream_response(self, system_instructions, input, model_settings, *args, **kwargs):
        deltas, reported, reported_input = 0, None, None
        if self.metered is not None:
            self.metered.truncated = False
        try:
            async for event in super().stream_response(  # type: ignore[misc]
                system_instructions, input, self._within(model_settings), *args, **kwargs
            ):
                if event.type == "response.output_text.delta":
                    deltas += 1
                elif event.type == "response.completed" and event.response.usage is not None:
                    reported = event.response.usage.output_tokens
                    reported_input = event.response.usage.input_tokens
                yield event
        finally:  # a turn cut short (a stop, a failure) is counted by what it sent
            if self.metered is not None:
                self.metered.add(reported if reported is not None else deltas)
                if reported_input is not None or deltas:  # a turn that failed is not billed
                    self.metered.add_input(reported_input, input)


def _cut_for_length(response: Any) -> bool:
    details = getattr(response, "incomplete_details", None)
    return getattr(details, "reason", None) == "max_output_tokens"


class _MeteredChatCompletions(_Metered, LeanChatCompletionsModel):
    """Chat Completions (compatible servers and the embedded model), metered per turn."""


class _MeteredResponses(_Metered, OpenAIResponsesModel):
    """OpenAI's Responses API, metered per turn."""

    async def _fetch_response(self, *args: Any, **kwargs: Any) -> Any:
        fetched = await super()._fetch_response(*args, **kwargs)
        return self._length_ends(fetched) if kwargs.get("stream") else fetched

    async def _length_ends(self, stream: Any) -> AsyncIterator[Any]:
        """The stream with an `incomplete` for max_output_tokens read as its end: for this
        app a reply complete and truncated (the SDK would fail the run on `incomplete`)."""
        try:
            async for event in stream:
                if getattr(event, "type", None) == "response.incomplete" and _cut_for_length(
                    event.response
                ):
                    self._finished("length")
                    event = ResponseCompletedEvent(
                        type="response.completed",
                        response=event.response,
                        sequence_number=event.sequence_number,
                    )
                yield event
        finally:
            await self._maybe_aclose_async_iterator(stream)


USER_INSTRUCTIONS_HEADING = (
    "The user has given these instructions of their own; follow them where they do not "
    "conflict with the above:"
)


def instructions(user_instructions: str = "") -> str:
    """The agent's system instructions: AGENT_INSTRUCTIONS, then the user's own (their
    settings page), when they gave any."""
    if not user_instructions.strip():
        return settings.AGENT_INSTRUCTIONS
    own = user_instructions.strip()
    return f"{settings.AGENT_INSTRUCTIONS}\n\n{USER_INSTRUCTIONS_HEADING}\n{own}"


async def _agent(
    chosen: catalog.Model,
    *,
    max_tokens: int | None = None,
    usage: Usage | None = None,
    user_instructions: str = "",
) -> Agent:
    """The agent with the provider's model, asking for at most `max_tokens` over all its
    turns (by default REPLY_MAX_TOKENS; the embedded model: no more than LOCAL_MAX_TOKENS a
    turn), each turn's spend added to `usage`, told the user's own instructions too."""
    max_tokens = settings.REPLY_MAX_TOKENS if max_tokens is None else max_tokens
    usage = usage if usage is not None else Usage()
    usage.limit = max_tokens
    client = await _client(chosen)
    # Traces go to OpenAI only when OpenAI is the provider anyway (no text leaves for a third
    # party); the SDK's own OPENAI_AGENTS_DISABLE_TRACING turns them off there too (the tests
    # set it).
    set_tracing_disabled(chosen.kind != "openai" or settings.OPENAI_AGENTS_DISABLE_TRACING)
    if chosen.kind == "openai":
        model = _MeteredResponses(model=chosen.id, openai_client=client)
        model_settings = ModelSettings(max_tokens=max_tokens)
    else:
        model = _MeteredChatCompletions(model=chosen.id, openai_client=client)
        model_settings = ModelSettings(
            include_usage=True,
            max_tokens=min(LOCAL_MAX_TOKENS, max_tokens) if chosen.kind == "local" else max_tokens,
        )
    model.metered = usage
    return Agent(
        name="Assistant",
        instructions=instructions(user_instructions),
        model=model,
        model_settings=model_settings,
        tools=[] if chosen.offline_demo else tools.enabled(),
    )


@dataclass(frozen=True)
class ToolEvent:
    """The agent called a tool (`output` None), or the tool it called ended."""

    call_id: str
    name: str
    arguments: str
    output: str | None = None


def _tool_event(event: Any) -> ToolEvent | None:
    """A tool call or result from the SDK's run item events; None for anything else."""
    if event.type != "run_item_stream_event" or event.name not in ("tool_called", "tool_output"):
        return None
    raw = event.item.raw_item
    field = (
        raw.get if isinstance(raw, dict) else lambda name, default="": getattr(raw, name, default)
    )
    call_id = str(field("call_id", "") or "")
    if event.name == "tool_called":
        return ToolEvent(call_id, str(field("name", "")), str(field("arguments", "") or ""))
    return ToolEvent(call_id, "", "", output=str(event.item.output))


async def stream_reply(
    history: list[dict[str, str]],
    *,
    chosen: catalog.Model,
    usage: Usage,
    max_tokens: int | None = None,
    context: tools.ChatContext | None = None,
    user_instructions: str = "",
) -> AsyncIterator[str | ToolEvent]:
    """Text deltas of the agent's answer to the thread's history, and its tool calls as they
    happen; fills `usage` at the end. `context` is what the tools of this reply may know;
    `user_instructions` are the asker's own, added to the agent's."""
    try:
        agent = await _agent(
            chosen, max_tokens=max_tokens, usage=usage, user_instructions=user_instructions
        )
        result = Runner.run_streamed(agent, input=history, context=context, max_turns=MAX_TURNS)
        try:
            async for event in result.stream_events():
                if event.type == "raw_response_event" and isinstance(
                    event.data, ResponseTextDeltaEvent
                ):
                    if event.data.delta:
                        yield event.data.delta
                elif (step := _tool_event(event)) is not None:
                    yield step
        finally:
            # Stop the SDK's background task whether we finished, failed or were cancelled.
            result.cancel()
    except ChatError:
        raise
    except Exception as exc:
        failure = _provider_failure(exc, chosen)
        if failure is None:
            raise
        raise failure from exc


def _provider_failure(exc: Exception, chosen: catalog.Model) -> ChatError | None:
    """The ChatError a provider's failure is, naming the model (so a user can pick another)."""
    who = f"Model {chosen.id} ({chosen.provider})"
    if isinstance(exc, openai.APITimeoutError):
        return ChatError("timeout", f"{who} timed out.")
    if isinstance(exc, openai.APIStatusError):
        return ChatError(
            "provider_error",
            f"{who} answered HTTP {exc.status_code}: {_detail(exc)}",
            recoverable=exc.status_code >= 500 or exc.status_code in (408, 409, 429),
        )
    if isinstance(exc, openai.APIConnectionError):
        return ChatError("provider_error", f"{who} could not be reached.", recoverable=True)
    if isinstance(exc, openai.APIError):
        return ChatError("provider_error", f"{who} failed: {_detail(exc)}", recoverable=True)
    if isinstance(exc, AgentsException):
        return ChatError(
            "provider_error", f"{who} failed: {exc.__class__.__name__}", recoverable=True
        )
    return None


def _detail(exc: openai.APIError) -> str:
    """The provider's own error message, kept short."""
    body = exc.body if isinstance(exc.body, dict) else {}
    text = body.get("message") or (body.get("error") or {}).get("message") or exc.message
    return str(text)[:300]


TITLE_PROMPT = (
    "Write a short title (at most six words, no quotes, no final period) for a conversation "
    "that begins with this message:\n\n{message}"
)


TITLER_INSTRUCTIONS = "You write short, plain titles."


async def make_title(
    first_message: str, *, chosen: catalog.Model, max_tokens: int, usage: Usage
) -> str:
    """A short title for a thread, written by the model from its first message; fills `usage`.

    One plain call to the reply's provider and model (the Responses API for OpenAI, Chat
    Completions elsewhere), asking for at most `max_tokens`: no agent run, no tools, no turns,
    so a new thread costs one small request beside its reply, not a second run of the SDK."""
    usage.limit = max_tokens
    prompt = TITLE_PROMPT.format(message=first_message[:2000])
    try:
        client = await _client(chosen)
        if chosen.kind == "openai":
            response = await client.responses.create(
                model=chosen.id,
                instructions=TITLER_INSTRUCTIONS,
                input=prompt,
                max_output_tokens=max_tokens,
            )
            text = response.output_text
            spent = response.usage and (response.usage.input_tokens, response.usage.output_tokens)
        else:
            completion = await client.chat.completions.create(
                model=chosen.id,
                messages=[
                    {"role": "system", "content": TITLER_INSTRUCTIONS},
                    {"role": "user", "content": prompt},
                ],
                max_tokens=max_tokens,
            )
            text = completion.choices[0].message.content if completion.choices else ""
            spent = completion.usage and (
                completion.usage.prompt_tokens,
                completion.usage.completion_tokens,
            )
    except openai.APIError as exc:
        raise ChatError(
            "provider_error", f"No title: {exc.__class__.__name__}", recoverable=True
        ) from exc
    usage.add(spent[1] if spent else 0)
    usage.add_input(spent[0] if spent else None, [TITLER_INSTRUCTIONS, prompt])
    return str(text or "")
