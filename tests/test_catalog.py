"""chat/catalog.py: the models offered, the provider of each, who may use them, and the model a
reply uses; through the API, the WebSocket and the streaming POST in-process (the daphne
transports and two processes: tests/test_transports.py)."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.test import AsyncClient, Client

from chat import catalog, model_choice
from chat.errors import ChatError
from chat.models import Message, ModelAccess, ModelUsage, Preferences, Thread
from scripts.stub_provider import StubServer
from tests.helpers import connect, frames_until_end, new_thread, receive, send, start_command

pytestmark = pytest.mark.django_db(transaction=True)

TWO = ["stub-model", "second-model"]


@pytest.fixture
def two_models(stub, settings):
    """The stub serves two models; `second-model` has a label and a small context window."""
    settings.AGENT_MODELS = TWO
    settings.AGENT_MODEL_LABELS = "second-model=Second (small)"
    settings.AGENT_MODEL_CONTEXT = "second-model=1024"
    return stub


def keep_to_group(model: str, name: str = "staff-only") -> Group:
    group, _ = Group.objects.get_or_create(name=name)
    access, _ = ModelAccess.objects.get_or_create(model=model)
    access.groups.add(group)
    model_choice.forget_access()  # as the admin does on a change
    return group


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def requested_models(stub) -> list[str]:
    return [r["body"]["model"] for r in stub.requests if r["path"].endswith("/chat/completions")]


def test_models_are_configured_from_the_environment_with_labels_context_and_providers(settings):
    settings.AGENT_PROVIDER = "local"
    settings.AGENT_MODEL = "gpt-4o"
    settings.AGENT_MODELS = ["SmolLM2-135M-Instruct", "gpt-4o@openai", "llama3.1:8b@ollama"]
    settings.AGENT_VISION_MODELS = ["gpt-4o"]
    settings.AGENT_MODEL_CONTEXT = "llama3.1:8b=4096"
    settings.OPENAI_API_KEY = "sk-test"
    settings.AGENT_PROVIDER_ENDPOINTS = {
        "ollama": {"base_url": "http://127.0.0.1:11434/v1", "api_key": ""}
    }
    local, gpt, llama = catalog.models()
    assert (local.kind, local.offline_demo, local.context_tokens) == ("local", True, 2048)
    assert "offline demo" in local.label
    assert (gpt.kind, gpt.provider, gpt.vision, gpt.default) == ("openai", "openai", True, True)
    assert gpt.context_tokens == 128_000 and gpt.api_key == "sk-test"
    assert (llama.kind, llama.provider, llama.base_url) == (
        "compatible",
        "ollama",
        "http://127.0.0.1:11434/v1",
    )
    assert llama.context_tokens == 4096, "configured per model, over the family's default"
    assert "sk-test" not in repr(gpt), "a key is never printed"
    # A model's history budget leaves room for the reply and the instructions.
    assert local.history_chars(512) < llama.history_chars(512) < gpt.history_chars(512)


def test_a_provider_named_without_an_address_is_a_clear_error(settings):
    settings.AGENT_PROVIDER = "compatible"
    settings.AGENT_MODELS = ["mystery@elsewhere"]
    settings.AGENT_PROVIDER_ENDPOINTS = {}
    with pytest.raises(ChatError, match="AGENT_PROVIDER_ELSEWHERE_BASE_URL"):
        catalog.models()


def test_unset_the_one_model_of_today_is_offered(stub):
    (only,) = catalog.models()
    assert (only.id, only.default, only.provider) == ("stub-model", True, "compatible")


def test_the_api_lists_only_the_models_a_user_may_use(two_models, alice, bob):
    keep_to_group("second-model").user_set.add(bob)
    listed = logged_in(alice).get("/api/models/").json()
    assert listed == [
        {
            "id": "stub-model",
            "label": "stub-model",
            "provider": "compatible",
            "default": True,
            "vision": False,
        }
    ]
    bobs = logged_in(bob).get("/api/models/").json()
    assert [m["id"] for m in bobs] == TWO
    assert bobs[1]["label"] == "Second (small)"


def test_a_thread_keeps_its_model_and_a_new_thread_takes_the_last_choice(two_models, alice):
    client = logged_in(alice)
    first = client.post("/api/threads/", {"title": "a"}, content_type="application/json").json()
    assert first["model"] == "stub-model", "the default, nothing chosen yet"
    changed = client.patch(
        f"/api/threads/{first['id']}/", {"model": "second-model"}, content_type="application/json"
    )
    assert changed.status_code == 200 and changed.json()["model"] == "second-model"
    second = client.post("/api/threads/", {}, content_type="application/json").json()
    assert second["model"] == "second-model", "the user's last choice"
    assert Preferences.objects.get(user=alice).model == "second-model"


@pytest.mark.parametrize("model", ["second-model", "no-such-model", "", 7])
def test_a_model_the_user_may_not_use_is_refused_by_the_api_and_nothing_changes(
    two_models, alice, model
):
    keep_to_group("second-model")
    client = logged_in(alice)
    thread = Thread.objects.create(owner=alice, title="kept", model="stub-model")
    created = client.post(
        "/api/threads/", {"title": "x", "model": model}, content_type="application/json"
    )
    assert created.status_code == 400
    patched = client.patch(
        f"/api/threads/{thread.id}/",
        {"title": "changed", "model": model},
        content_type="application/json",
    )
    assert patched.status_code == 400
    assert list(Thread.objects.values_list("title", "model")) == [("kept", "stub-model")]
    assert not Preferences.objects.exists()


@pytest.mark.asyncio
async def test_the_model_of_a_start_reaches_the_provider_and_stays_the_threads(two_models, alice):
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, {**start_command("pick second"), "model": "second-model"})
    received = await frames_until_end(ws)
    changed = next(f for f in received if f["type"] == "thread")
    assert changed["thread"]["model"] == "second-model", "other tabs' pickers follow"
    assert next(f for f in received if f["type"] == "start")["model"] == "second-model"
    await send(ws, start_command("no model named"))
    received = await frames_until_end(ws)
    assert next(f for f in received if f["type"] == "start")["model"] == "second-model"
    await ws.disconnect()
    # Both replies, and the title the model wrote after the first.
    assert requested_models(two_models) == ["second-model"] * 3
    replies = Message.objects.filter(thread=thread, role="assistant").values_list("model")
    assert [m async for (m,) in replies] == ["second-model", "second-model"]


@pytest.mark.asyncio
async def test_a_forbidden_model_on_the_socket_is_a_bad_request_and_nothing_is_saved(
    two_models, alice
):
    await database_sync_to_async(keep_to_group)("second-model")
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    for model in ("second-model", "nope", 3):
        await send(ws, {**start_command("refused"), "model": model})
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["code"] == "bad_request"
    await send(ws, {"command": "heartbeat"})
    assert (await receive(ws))["type"] == "heartbeat", "the socket stays open"
    await ws.disconnect()
    assert not await Message.objects.filter(thread=thread).aexists()
    assert requested_models(two_models) == []


@pytest.mark.asyncio
async def test_a_forbidden_model_on_the_streaming_post_is_a_400_and_nothing_is_saved(
    two_models, alice
):
    await database_sync_to_async(keep_to_group)("second-model")
    thread = await Thread.objects.acreate(owner=alice, model="stub-model")
    for body in (
        {"message": "refused", "thread_id": str(thread.id), "model": "second-model"},
        {"message": "refused", "model": "second-model"},  # a new thread: none is made
    ):
        status, (refused,) = await stream_post(alice, **body)
        assert status == 400 and refused["code"] == "bad_request"
    assert await Thread.objects.acount() == 1 and not await Message.objects.aexists()


@pytest.mark.asyncio
async def test_a_model_the_operator_removed_gives_way_to_the_default_and_the_reply_says_so(
    stub, alice
):
    thread = await Thread.objects.acreate(owner=alice, model="retired-model")
    _, events = await stream_post(alice, message="hello", thread_id=str(thread.id))
    assert next(e for e in events if e["type"] == "start")["model"] == "stub-model"
    await thread.arefresh_from_db()
    assert thread.model == "stub-model"
    reply = await Message.objects.aget(thread=thread, role="assistant")
    assert reply.model == "stub-model"


@pytest.mark.asyncio
async def test_a_second_provider_serves_its_own_models(stub, settings, alice):
    with StubServer(api_key="other-key") as other:
        settings.AGENT_MODELS = ["stub-model", "far-model@far"]
        settings.AGENT_PROVIDER_ENDPOINTS = {"far": {"base_url": other.url, "api_key": "other-key"}}
        other.script("hello", tokens=["from ", "far"])
        _, events = await stream_post(alice, message="hello", model="far-model")
        assert "".join(e.get("token", "") for e in events) == "from far"
        assert requested_models(other) == ["far-model"]
        assert requested_models(stub) == []


@pytest.mark.asyncio
async def test_a_failing_model_is_named_in_its_error_and_the_reply_is_kept(two_models, alice):
    two_models.script("broken", status=404)
    _, events = await stream_post(alice, message="broken please", model="second-model")
    failure = events[-1]
    assert failure["type"] == "error" and failure["code"] == "provider_error"
    assert "second-model" in failure["message"] and "404" in failure["message"]
    reply = await Message.objects.aget(role="assistant")
    assert reply.status == "error" and reply.model == "second-model"


@pytest.mark.asyncio
async def test_the_history_fits_the_models_context_and_the_reply_says_how_much_was_left_out(
    two_models, alice
):
    # Titled, so no model-made title request (sent after the reply) can be the last one read.
    thread = await Thread.objects.acreate(owner=alice, model="second-model", title="long")
    leaf = None
    for i in range(6):
        asked = await Message.objects.acreate(
            thread=thread, role="user", content=f"old {i} " + "x" * 400, parent=leaf
        )
        leaf = await Message.objects.acreate(
            thread=thread, role="assistant", content="ok " + "y" * 400, parent=asked
        )
    thread.active_leaf = leaf
    await thread.asave(update_fields=["active_leaf"])
    _, events = await stream_post(alice, message="newest", thread_id=str(thread.id))
    start = next(e for e in events if e["type"] == "start")
    sent = [r for r in two_models.requests if r["path"].endswith("/chat/completions")][-1]
    history = [m for m in sent["body"]["messages"] if m["role"] != "system"]
    assert history[-1]["content"] == "newest"
    budget = catalog.get("second-model").history_chars(4096)
    assert sum(len(m["content"]) for m in history) <= budget
    left_out = 13 - len(history)
    assert left_out > 0 and start["history_left_out"] == left_out
    reply = await Message.objects.aget(thread=thread, status="complete", content__startswith="Echo")
    assert reply.history_left_out == left_out, "a reload still says so"


@pytest.mark.asyncio
async def test_each_reply_counts_its_input_and_output_tokens_for_its_model(two_models, alice):
    two_models.script("count", tokens=["a", "b"], usage={"prompt_tokens": 30})
    thread = await Thread.objects.acreate(owner=alice, title="titled: no title to write")
    for model in ("stub-model", "second-model", "second-model"):
        status, events = await stream_post(
            alice, message="count me", model=model, thread_id=str(thread.id)
        )
        assert events[-1]["type"] == "complete"
    rows: dict = {}
    for _ in range(100):  # a reply settles its tokens just after its last frame
        rows = {u.model: u async for u in ModelUsage.objects.filter(user=alice)}
        if sum(u.replies for u in rows.values()) == 3:
            break
        await asyncio.sleep(0.05)
    assert (rows["second-model"].replies, rows["second-model"].input_tokens) == (2, 60)
    assert (rows["second-model"].output_tokens, rows["stub-model"].output_tokens) == (4, 2)
    usage = await database_sync_to_async(lambda: logged_in(alice).get("/api/usage/").json())()
    assert usage["input_used"] == 90 and usage["input_remaining"] is None
    assert {(m["model"], m["input_tokens"], m["output_tokens"]) for m in usage["models"]} == {
        ("stub-model", 30, 2),
        ("second-model", 60, 4),
    }


@pytest.mark.asyncio
async def test_an_input_budget_refuses_the_reply_after_the_one_that_spent_it(
    two_models, settings, alice
):
    settings.DAILY_INPUT_BUDGET = 50
    two_models.script("count", tokens=["a"], usage={"prompt_tokens": 60})
    status, events = await stream_post(alice, message="count me")
    assert status == 200 and events[-1]["type"] == "complete"
    status, (refused,) = await stream_post(alice, message="count me")
    assert status == 429 and refused["code"] == "quota_exceeded"
    assert await Message.objects.filter(role="assistant").acount() == 1


async def stream_post(user, **body) -> tuple[int, list[dict]]:
    """`POST /api/stream/message` in-process: its status, and its events (or its error)."""
    client = AsyncClient()
    await client.aforce_login(user)
    answer = await client.post("/api/stream/message", body, content_type="application/json")
    if not answer.streaming:
        return answer.status_code, [json.loads(answer.content)]
    text = b"".join([chunk async for chunk in answer.streaming_content]).decode()
    lines = [line[5:] for line in text.splitlines() if line.startswith("data:")]
    return answer.status_code, [json.loads(line) for line in lines]


def test_thread_models_are_unique_ids_across_providers(settings, stub):
    settings.AGENT_MODELS = ["same", "same@compatible", "other"]
    assert [m.id for m in catalog.models()] == ["same", "other"]
