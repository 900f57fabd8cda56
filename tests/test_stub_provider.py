"""The scripted OpenAI stub, exercised through the real openai SDK over loopback HTTP."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from scripts.stub_provider import StubServer

MESSAGES = [{"role": "user", "content": "hello world"}]


@pytest.fixture
def stub():
    """A stub server running for one test."""
    with StubServer(api_key="test") as server:
        yield server


def client_for(stub, **options):
    """An async SDK client pointed at the stub, with retries off so failures surface at once."""
    return openai.AsyncOpenAI(base_url=stub.url, api_key="test", max_retries=0, **options)


async def collect(stream, into):
    """Append streamed content deltas to `into` (kept on error) and return the chunks."""
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            into.append(chunk.choices[0].delta.content)
    return chunks


async def stream_chat(client, content="hello world", **extra):
    """Start a streamed chat completion for one user message."""
    messages = [{"role": "user", "content": content}]
    return await client.chat.completions.create(
        model="gpt-test", messages=messages, stream=True, **extra
    )


@pytest.mark.asyncio
async def test_streaming_yields_scripted_tokens_in_order_then_a_usage_chunk(stub):
    stub.script("weather", tokens=["It", " is", " sunny"], usage={"prompt_tokens": 7})
    tokens = []
    async with client_for(stub) as client:
        stream = await stream_chat(
            client, "what is the weather?", stream_options={"include_usage": True}
        )
        chunks = await collect(stream, tokens)

    assert tokens == ["It", " is", " sunny"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.model for c in chunks} == {"gpt-test"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
    }
    assert chunks[-1].usage.total_tokens == 10


@pytest.mark.asyncio
async def test_streaming_without_include_usage_sends_no_usage_chunk(stub):
    async with client_for(stub) as client:
        chunks = await collect(await stream_chat(client), [])
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


@pytest.mark.asyncio
async def test_an_unscripted_request_gets_an_echo_of_the_last_user_message(stub):
    tokens = []
    async with client_for(stub) as client:
        await collect(await stream_chat(client, "hello  world"), tokens)
        completion = await client.chat.completions.create(model="m", messages=MESSAGES)

    assert tokens == ["Echo:", " hello", "  world"]
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hello world"
    assert completion.usage.completion_tokens == 3


@pytest.mark.asyncio
async def test_reply_tokens_makes_the_default_reply_that_many_lorem_words():
    with StubServer(reply_tokens=5, api_key="test") as stub:
        tokens = []
        async with client_for(stub) as client:
            await collect(await stream_chat(client), tokens)
    assert len(tokens) == 5
    assert tokens[0] == "lorem"
    assert all(token.startswith(" ") for token in tokens[1:])


@pytest.mark.asyncio
async def test_the_most_recent_matching_script_wins_and_times_limits_its_uses(stub):
    stub.script("hello", tokens=["old"])
    stub.script("hello", tokens=["new"], times=1)
    async with client_for(stub) as client:
        first, second = [], []
        await collect(await stream_chat(client), first)
        await collect(await stream_chat(client), second)
    assert (first, second) == (["new"], ["old"])


@pytest.mark.asyncio
async def test_a_scripted_500_raises_internal_server_error(stub):
    stub.script("hello", status=500)
    async with client_for(stub) as client:
        with pytest.raises(openai.InternalServerError) as excinfo:
            await stream_chat(client)
    assert excinfo.value.status_code == 500
    assert excinfo.value.body["type"] == "server_error"


@pytest.mark.asyncio
async def test_a_scripted_429_raises_rate_limit_error(stub):
    stub.script("hello", status=429)
    async with client_for(stub) as client:
        with pytest.raises(openai.RateLimitError) as excinfo:
            await stream_chat(client)
    assert excinfo.value.code == "rate_limit_exceeded"


@pytest.mark.asyncio
async def test_error_after_yields_tokens_then_raises_api_error(stub):
    stub.script("hello", tokens=["a", "b", "c", "d"], error_after=2)
    tokens = []
    async with client_for(stub) as client:
        stream = await stream_chat(client)
        with pytest.raises(openai.APIError) as excinfo:
            await collect(stream, tokens)
    assert tokens == ["a", "b"]
    # The in-stream error is a plain APIError, not one of the status-code subclasses.
    assert type(excinfo.value) is openai.APIError
    assert excinfo.value.code == "server_error"


@pytest.mark.asyncio
async def test_drop_after_yields_tokens_then_raises_api_connection_error(stub):
    stub.script("hello", tokens=["a", "b", "c", "d"], drop_after=2)
    tokens = []
    async with client_for(stub) as client:
        stream = await stream_chat(client)
        with pytest.raises(openai.APIConnectionError) as excinfo:
            await collect(stream, tokens)
    assert tokens == ["a", "b"]
    assert not isinstance(excinfo.value, openai.APITimeoutError)


@pytest.mark.asyncio
async def test_stall_after_yields_a_token_then_raises_a_timeout_error(stub):
    stub.script("hello", tokens=["a", "b", "c"], stall_after=1)
    tokens = []
    async with client_for(stub, timeout=1.0) as client:
        stream = await stream_chat(client)
        with pytest.raises(openai.APITimeoutError):
            await collect(stream, tokens)
    assert tokens == ["a"]


@pytest.mark.asyncio
async def test_stop_closes_a_stalled_connection_instead_of_waiting_for_it():
    stub = StubServer(api_key="test").start()
    stub.script("hello", tokens=["a", "b"], stall_after=1)
    tokens = []
    async with client_for(stub, timeout=60.0) as client:
        stream = await stream_chat(client)
        chunks = stream.__aiter__()
        await anext(chunks)  # the role chunk
        tokens.append((await anext(chunks)).choices[0].delta.content)
        reading = asyncio.create_task(anext(chunks))
        # Guards against a hang only; the stall itself would last 600 s.
        await asyncio.wait_for(asyncio.to_thread(stub.stop), 30)
        with pytest.raises(openai.APIConnectionError) as excinfo:
            await asyncio.wait_for(reading, 30)
    assert tokens == ["a"]
    assert not isinstance(excinfo.value, openai.APITimeoutError)


@pytest.mark.asyncio
async def test_requests_are_recorded_with_headers_and_chatkit_sessions_return_a_secret(stub):
    async with client_for(stub) as client:
        session = await client.beta.chatkit.sessions.create(
            user="user-1", workflow={"id": "wf_123"}, extra_headers={"X-Trace": "t1"}
        )

    assert session.object == "chatkit.session"
    assert session.client_secret.startswith("ek_")
    assert session.id.startswith("cksess_")
    assert session.workflow.id == "wf_123"
    assert session.user == "user-1"
    lifetime = session.expires_at - time.time()  # a timestamp, not a speed
    assert 590 < lifetime <= 600
    [recorded] = stub.requests
    assert recorded["method"] == "POST"
    assert recorded["path"] == "/v1/chatkit/sessions"
    assert recorded["headers"]["openai-beta"] == "chatkit_beta=v1"
    assert recorded["headers"]["authorization"] == "Bearer <redacted>", "the key is never shown"
    assert recorded["headers"]["x-trace"] == "t1"
    assert recorded["body"] == {"user": "user-1", "workflow": {"id": "wf_123"}}
    assert isinstance(recorded["received_at"], float)


@pytest.mark.asyncio
async def test_a_scripted_chatkit_status_fails_session_creation(stub):
    stub.chatkit_status = 401
    async with client_for(stub) as client:
        with pytest.raises(openai.AuthenticationError) as excinfo:
            await client.beta.chatkit.sessions.create(user="u", workflow={"id": "wf"})
    assert excinfo.value.code == "invalid_api_key"


def test_control_endpoints_script_record_and_reset_over_http(stub):
    base = stub.url.removesuffix("/v1")
    with httpx.Client(base_url=base) as anonymous:
        for path in ("/_stub/requests", "/v1/models"):
            assert anonymous.get(path).status_code == 401
        assert anonymous.post("/_stub/scripts", json={"tokens": ["x"]}).status_code == 401
    with httpx.Client(base_url=base, headers={"Authorization": "Bearer test"}) as http:
        script = {"match": "ping", "tokens": ["pong"]}
        assert http.post("/_stub/scripts", json=script).status_code == 200
        assert http.post("/_stub/scripts", json={"mtach": "typo"}).status_code == 400
        assert http.post("/_stub/chatkit", json={"status": 400}).status_code == 200
        reply = http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "ping?"}]},
        )
        assert reply.json()["choices"][0]["message"]["content"] == "pong"
        chatkit = http.post("/v1/chatkit/sessions", json={"user": "u", "workflow": {"id": "w"}})
        assert chatkit.status_code == 400
        assert set(chatkit.json()["error"]) >= {"message", "type", "code"}
        missing = http.get("/v1/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "unknown_url"
        models = http.get("/v1/models").json()
        assert models["object"] == "list"
        assert len(models["data"]) == 1

        recorded = http.get("/_stub/requests").json()
        assert [r["path"] for r in recorded] == [
            "/v1/chat/completions",
            "/v1/chatkit/sessions",
            "/v1/nope",
            "/v1/models",
        ]
        assert http.post("/_stub/reset").status_code == 200
        assert http.get("/_stub/requests").json() == []
        assert stub.chatkit_status is None


def test_the_cli_prints_its_url_and_key_and_serves_only_that_key():
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "scripts.stub_provider", "--port", "0"]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline().strip()
            key = proc.stdout.readline().strip().removeprefix("STUB_API_KEY=")
            url = line.removeprefix("STUB_URL=")
            anonymous = httpx.get(f"{url}/models", timeout=5)
            reply = httpx.get(
                f"{url}/models", timeout=5, headers={"Authorization": f"Bearer {key}"}
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert line.startswith("STUB_URL=http://127.0.0.1:")
    assert line.endswith("/v1")
    assert len(key) >= 16, "a random key when none is given"
    assert anonymous.status_code == 401
    assert reply.status_code == 200
    assert reply.json()["data"][0]["object"] == "model"
    assert proc.returncode == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_the_stub_serves_loopback_only(host):
    with pytest.raises(ValueError, match="loopback"):
        StubServer(host=host)


@pytest.mark.asyncio
async def test_tokens_cut_at_max_tokens_end_for_length(stub):
    stub.script("long", tokens=["a", "b", "c", "d"])
    async with client_for(stub) as client:
        cut = await collect(await stream_chat(client, "long", max_tokens=2), [])
        whole = await collect(await stream_chat(client, "long", max_tokens=4), [])
        said = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "long"}], max_tokens=3
        )
        cut_response = await client.responses.create(
            model="gpt-test", input="long", max_output_tokens=2
        )
        whole_response = await client.responses.create(model="gpt-test", input="long")
    assert cut[-1].choices[0].finish_reason == "length"
    assert whole[-1].choices[0].finish_reason == "stop"
    assert said.choices[0].finish_reason == "length"
    assert cut_response.status == "incomplete"
    assert cut_response.incomplete_details.reason == "max_output_tokens"
    assert whole_response.status == "completed"
