"""chat/chunks.py: the provider's stream read leanly gives the agent what the openai client
would, with the text chunks that queued up merged."""

import openai
import pytest
from agents import ModelSettings, ModelTracing, OpenAIChatCompletionsModel

from chat.chunks import _SSE, LeanChatCompletionsModel, _merge


def _events(payload: bytes, cut_every: int) -> list[str]:
    decoder = _SSE()
    found: list[str] = []
    for start in range(0, len(payload), cut_every):
        found += decoder.feed(payload[start : start + cut_every])
    return found


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_events_are_whole_however_the_bytes_are_cut(newline):
    lines = [
        b": a comment",
        b'data: {"a": "\xc3\xa9t\xc3\xa9"}',
        b"",
        b"event: note",
        b"data: two",
        b"data:lines",
        b"",
        b"id: 7",
        b"data: [DONE]",
        b"",
    ]
    payload = newline.join(lines) + newline
    expected = ['{"a": "été"}', "two\nlines", "[DONE]"]
    for cut_every in (1, 2, 3, 7, len(payload)):
        assert _events(payload, cut_every) == expected


def _text_chunk(text: str, **delta: object) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text, **delta}, "finish_reason": None}],
    }


def test_only_text_chunks_merge():
    first = _text_chunk("", role="assistant")
    assert _merge(first, _text_chunk("Hel"))
    assert _merge(first, _text_chunk("lo", role="assistant"))
    assert first["choices"][0]["delta"] == {"content": "Hello", "role": "assistant"}

    ending = _text_chunk("!")
    ending["choices"][0]["finish_reason"] = "stop"
    tool = _text_chunk("", tool_calls=[{"index": 0, "function": {"name": "f"}}])
    usage = {**_text_chunk(""), "choices": [], "usage": {"completion_tokens": 3}}
    for other in (ending, tool, usage, _text_chunk("x", role="tool")):
        assert not _merge(first, other)
    assert first["choices"][0]["delta"]["content"] == "Hello"


async def _stream(model, prompt: str) -> tuple[str, int, int]:
    """The text, the number of text deltas and the output tokens the agent would see."""
    text, deltas, output_tokens = "", 0, 0
    events = model.stream_response(
        system_instructions=None,
        input=prompt,
        model_settings=ModelSettings(include_usage=True),
        tools=[],
        output_schema=None,
        handoffs=[],
        tracing=ModelTracing.DISABLED,
    )
    async for event in events:
        if event.type == "response.output_text.delta":
            text += event.delta
            deltas += 1
        elif event.type == "response.completed":
            output_tokens = event.response.usage.output_tokens
    return text, deltas, output_tokens


@pytest.mark.asyncio
async def test_the_lean_model_streams_what_the_sdk_model_streams(stub):
    tokens = [f"w{i} " for i in range(300)]
    stub.script("burst", tokens=tokens, delay_ms=0)
    client = openai.AsyncOpenAI(base_url=stub.url, api_key="test-key", max_retries=0)
    plain = await _stream(OpenAIChatCompletionsModel("stub-model", client), "burst")
    lean = await _stream(LeanChatCompletionsModel("stub-model", client), "burst")
    assert plain[0] == lean[0] == "".join(tokens)
    assert plain[2] == lean[2] == len(tokens)
    # Sent without pause, chunks queue up while the agent works: it handles fewer.
    assert plain[1] == len(tokens) and lean[1] < len(tokens)


@pytest.mark.asyncio
async def test_an_error_event_in_the_stream_raises_as_the_openai_client_does(stub):
    stub.script("broken", tokens=["a", "b", "c", "d"], delay_ms=0, error_after=2)
    client = openai.AsyncOpenAI(base_url=stub.url, api_key="test-key", max_retries=0)
    text = ""
    with pytest.raises(openai.APIError) as raised:
        async for event in LeanChatCompletionsModel("stub-model", client).stream_response(
            None, "broken", ModelSettings(), [], None, [], ModelTracing.DISABLED
        ):
            if event.type == "response.output_text.delta":
                text += event.delta
    assert "server had an error" in raised.value.message
    assert text == "ab", "what came before the error is streamed first"


async def _one_request(stub, client, *, stream: bool) -> dict:
    """The body the stub received for one turn of the product's agent (its tools, a
    system prompt, a history, a token limit)."""
    from chat import tools

    stub.reset()
    stub.script("history", tokens=["ok"], delay_ms=0)
    model = LeanChatCompletionsModel("stub-model", client)
    history = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "history"},
    ]
    arguments = dict(
        system_instructions="You answer.",
        input=history,
        model_settings=ModelSettings(include_usage=True, max_tokens=321),
        tools=tools.enabled(),
        output_schema=None,
        handoffs=[],
        tracing=ModelTracing.DISABLED,
    )
    if stream:
        async for _ in model.stream_response(**arguments):
            pass
    else:
        await model.get_response(**arguments, previous_response_id=None)
    (request,) = stub.requests
    return request


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [True, False])
async def test_a_lean_client_sends_what_the_openai_client_sends(
    stub, settings, monkeypatch, stream
):
    """The request goes out without the openai client's transform: the same body (every
    tool's schema, the history, the limits), path and auth as through its own `create`."""
    from chat.chunks import LeanCompletions, lean_client

    settings.AGENT_TOOLS = ["chat.tools.current_time", "chat.tools.calculate"]
    own = openai.AsyncOpenAI(base_url=stub.url, api_key="test-key", max_retries=0)
    lean = lean_client(openai.AsyncOpenAI(base_url=stub.url, api_key="test-key", max_retries=0))
    assert isinstance(lean.chat.completions, LeanCompletions)
    sent_by_own = await _one_request(stub, own, stream=stream)

    async def transformed(*args, **kwargs):
        raise AssertionError("the lean client took the openai client's own path")

    monkeypatch.setattr(openai.resources.chat.completions.AsyncCompletions, "create", transformed)
    sent_by_lean = await _one_request(stub, lean, stream=stream)
    assert sent_by_lean["body"] == sent_by_own["body"]
    assert len(sent_by_lean["body"]["tools"]) == 2
    assert sent_by_lean["body"]["max_tokens"] == 321
    assert sent_by_lean["path"] == sent_by_own["path"]
    assert sent_by_lean["headers"].get("authorization") == sent_by_own["headers"]["authorization"]


@pytest.mark.asyncio
async def test_a_lean_client_hands_what_is_not_plain_json_to_the_openai_client(stub):
    """A value the transform would change (here a tuple, sent as a list) takes the openai
    client's own path."""
    from chat.chunks import lean_client

    stub.script("tuple", tokens=["fine"], delay_ms=0)
    client = lean_client(openai.AsyncOpenAI(base_url=stub.url, api_key="test-key", max_retries=0))
    answer = await client.chat.completions.create(
        model="stub-model", messages=({"role": "user", "content": "tuple"},)
    )
    assert answer.choices[0].message.content == "fine"
    assert stub.requests[-1]["body"]["messages"] == [{"role": "user", "content": "tuple"}]
