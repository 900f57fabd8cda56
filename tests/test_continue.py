"""A reply cut by the token limit (`truncated`), and `continue`, which extends it (issue 24)."""

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from chatkit.actions import Action
from chatkit.types import (
    ThreadCustomActionParams,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadsCustomActionReq,
)
from django.test import AsyncClient

from chat.models import Message, Thread
from tests import chatkit_client as ck
from tests.helpers import (
    connect,
    frames_until_end,
    new_thread,
    receive,
    reply_text,
    send,
    start_command,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

LIMIT = 5
FIRST = [f"w{i} " for i in range(12)]  # more than LIMIT: the stub cuts it
MORE = ["and ", "the ", "end."]  # fewer than LIMIT: the continuation ends normally


@pytest.fixture
def limited(stub, memory_layer, settings):
    settings.REPLY_MAX_TOKENS = LIMIT
    stub.script("tell me a long story", tokens=FIRST, delay_ms=2)
    stub.script("Continue exactly", tokens=MORE, delay_ms=2)
    return stub


@database_sync_to_async
def messages_of(thread: Thread) -> list[Message]:
    return list(thread.messages.order_by("created_at", "id"))


def continue_command(message_id: str) -> dict:
    return {"command": "continue", "message_id": message_id}


async def truncated_reply(alice):
    """A thread whose reply the token limit cut; its socket and the reply's frames."""
    thread = await new_thread(alice, "A story")  # titled: no `thread` frames come
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("tell me a long story"))
    received = await frames_until_end(ws)
    return thread, ws, received


async def test_a_reply_cut_by_the_token_limit_is_complete_and_truncated(limited, alice):
    thread, ws, received = await truncated_reply(alice)
    end = received[-1]
    assert end["type"] == "complete" and end["status"] == "complete"
    assert end["truncated"] is True
    assert reply_text(received) == "".join(FIRST[:LIMIT])
    _, reply = await messages_of(thread)
    assert reply.status == "complete" and reply.truncated is True
    assert reply.frames == end["seq"]
    await ws.disconnect()


async def test_a_reply_that_ends_by_itself_is_not_truncated(limited, alice):
    thread = await new_thread(alice, "A story")  # titled: no `thread` frames come
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("short"))
    end = (await frames_until_end(ws))[-1]
    assert end["type"] == "complete" and "truncated" not in end
    _, reply = await messages_of(thread)
    assert reply.truncated is False
    await ws.disconnect()


async def test_continue_extends_the_same_reply_and_carries_on_its_seq(limited, alice):
    thread, ws, received = await truncated_reply(alice)
    reply_id, last_seq = received[-1]["message_id"], received[-1]["seq"]
    before = reply_text(received)

    await send(ws, continue_command(reply_id))
    more = await frames_until_end(ws)
    assert [f["type"] for f in more] == ["token"] * (len(more) - 1) + ["complete"], more
    assert {f["message_id"] for f in more} == {reply_id}
    seqs = [f["seq"] for f in more]
    assert seqs == list(range(last_seq + 1, last_seq + 1 + len(seqs)))
    assert more[-1]["type"] == "complete" and "truncated" not in more[-1]
    assert reply_text(more) == "".join(MORE)

    messages = await messages_of(thread)
    assert [m.id for m in messages][1] == uuid.UUID(reply_id) and len(messages) == 2
    reply = messages[1]
    assert reply.content == before + "".join(MORE)
    assert reply.status == "complete" and reply.truncated is False
    assert reply.frames == more[-1]["seq"]

    request = [r for r in limited.requests if r["path"].endswith("/chat/completions")][-1]
    sent = [(m["role"], m["content"]) for m in request["body"]["messages"]][1:]
    assert sent[-2] == ("assistant", before)  # the partial reply goes back to the model
    assert sent[-1][0] == "user" and "Continue exactly" in sent[-1][1]
    await ws.disconnect()


async def test_a_continuation_cut_again_is_truncated_again(limited, alice):
    limited.script("Continue exactly", tokens=FIRST, delay_ms=2)
    thread, ws, received = await truncated_reply(alice)
    await send(ws, continue_command(received[-1]["message_id"]))
    more = await frames_until_end(ws)
    assert more[-1]["truncated"] is True
    _, reply = await messages_of(thread)
    assert reply.truncated is True and reply.content == "".join(FIRST[:LIMIT]) * 2
    # And it can be continued once more, after its new last frame.
    await send(ws, continue_command(received[-1]["message_id"]))
    again = await frames_until_end(ws)
    assert again[0]["seq"] == more[-1]["seq"] + 1
    await ws.disconnect()


async def test_a_second_tab_sees_the_whole_text_during_a_continuation(limited, alice):
    limited.script("Continue exactly", tokens=["x"] * 4, delay_ms=150)
    thread, ws, received = await truncated_reply(alice)
    reply_id, last_seq = received[-1]["message_id"], received[-1]["seq"]
    before = reply_text(received)
    await send(ws, continue_command(reply_id))
    first = await receive(ws)
    assert first["type"] == "token" and first["seq"] == last_seq + 1

    other = await connect(thread.id, alice)
    ready = await receive(other)
    active = ready["active"]
    assert active["message_id"] == reply_id and active["seq"] > last_seq
    assert active["content"].startswith(before + first["token"])
    later = await frames_until_end(other)
    assert all(f["seq"] > active["seq"] for f in later)
    assert active["content"] + reply_text(later) == before + "xxxx"
    await frames_until_end(ws)
    await other.disconnect()
    await ws.disconnect()


async def test_continue_while_it_runs_is_busy(limited, alice):
    limited.script("Continue exactly", tokens=["x"] * 4, delay_ms=100)
    thread, ws, received = await truncated_reply(alice)
    reply_id = received[-1]["message_id"]
    await send(ws, continue_command(reply_id))
    assert (await receive(ws))["type"] == "token"
    await send(ws, continue_command(reply_id))
    while (frame := await receive(ws))["type"] != "error":
        pass
    assert frame["code"] == "busy" and "message_id" not in frame
    await frames_until_end(ws)
    await ws.disconnect()


async def refused(ws, command) -> dict:
    await send(ws, command)
    frame = await receive(ws)
    assert frame["type"] == "error" and "message_id" not in frame, frame
    return frame


async def test_continue_refusals_change_nothing(limited, alice):
    thread, ws, received = await truncated_reply(alice)
    reply_id = received[-1]["message_id"]
    user_message, reply = await messages_of(thread)

    # Not a UUID; the user's message; a message of another thread; no such message.
    assert (await refused(ws, continue_command("nope")))["code"] == "bad_request"
    assert (await refused(ws, continue_command(str(user_message.id))))["code"] == "bad_request"
    other_thread, other_ws, other_received = await truncated_reply(alice)
    other_id = other_received[-1]["message_id"]
    assert (await refused(ws, continue_command(other_id)))["code"] == "bad_request"
    assert (await refused(ws, continue_command(str(uuid.uuid4()))))["code"] == "bad_request"

    # Not the thread's last message any more.
    await send(ws, start_command("short"))
    await frames_until_end(ws)
    assert (await refused(ws, continue_command(reply_id)))["code"] == "bad_request"
    # A reply that is not truncated.
    last = (await messages_of(thread))[-1]
    assert (await refused(ws, continue_command(str(last.id))))["code"] == "bad_request"

    after = await messages_of(thread)
    assert [(m.id, m.content, m.status, m.truncated) for m in after[:2]] == [
        (m.id, m.content, m.status, m.truncated) for m in (user_message, reply)
    ]
    assert len(after) == 4
    _, other_reply = await messages_of(other_thread)
    assert other_reply.truncated is True and other_reply.status == "complete"
    await other_ws.disconnect()
    await ws.disconnect()


async def test_continue_spends_from_the_budget_like_a_start(limited, alice, settings):
    thread, ws, received = await truncated_reply(alice)
    settings.DAILY_TOKEN_BUDGET = LIMIT  # the first reply spent it
    frame = await refused(ws, continue_command(received[-1]["message_id"]))
    assert frame["code"] == "quota_exceeded"
    _, reply = await messages_of(thread)
    assert reply.status == "complete" and reply.truncated is True
    await ws.disconnect()


async def test_the_responses_api_incomplete_for_max_output_tokens_is_truncated(
    limited, alice, settings
):
    settings.AGENT_PROVIDER = "openai"  # the Responses API, at the stub
    settings.AGENT_MODEL = "gpt-test"
    thread, ws, received = await truncated_reply(alice)
    assert received[-1]["type"] == "complete" and received[-1]["truncated"] is True
    assert reply_text(received) == "".join(FIRST[:LIMIT])
    await send(ws, continue_command(received[-1]["message_id"]))
    more = await frames_until_end(ws)
    assert more[-1]["type"] == "complete" and "truncated" not in more[-1]
    _, reply = await messages_of(thread)
    assert reply.content == "".join(FIRST[:LIMIT] + MORE) and reply.truncated is False
    await ws.disconnect()


async def test_a_retried_continue_is_already_sent_not_refused(limited, alice):
    limited.script("Continue exactly", tokens=MORE, delay_ms=60)
    thread, ws, received = await truncated_reply(alice)
    command = {**continue_command(received[-1]["message_id"]), "client_id": str(uuid.uuid4())}
    await send(ws, command)
    assert (await receive(ws))["type"] == "token"
    await send(ws, command)  # sent again while it runs: not `busy`, where things stand
    while (frame := await receive(ws))["type"] == "token":
        pass
    assert frame["type"] == "ready", frame
    await frames_until_end(ws)
    asked = len(limited.requests)
    _, reply = await messages_of(thread)
    await send(ws, command)  # sent again once it ended: not `bad_request` (no longer cut)
    assert (await receive(ws))["type"] == "ready"
    _, again = await messages_of(thread)
    assert (again.content, again.status, again.frames) == (reply.content, "complete", reply.frames)
    assert reply.content == "".join(FIRST[:LIMIT] + MORE) and len(limited.requests) == asked
    await ws.disconnect()


async def test_a_continued_replys_metrics_cover_the_whole_reply(limited, alice):
    thread, ws, received = await truncated_reply(alice)
    first = received[-1]["metrics"]
    await send(ws, continue_command(received[-1]["message_id"]))
    whole = (await frames_until_end(ws))[-1]["metrics"]
    assert whole["totalTokens"] == LIMIT + len(MORE)
    assert whole["timeToFirstTokenMs"] == first["timeToFirstTokenMs"]
    assert whole["elapsedSeconds"] > first["elapsedSeconds"]
    _, reply = await messages_of(thread)
    assert reply.token_count == LIMIT + len(MORE)
    assert reply.first_token_ms == first["timeToFirstTokenMs"]
    await ws.disconnect()


# --- the streaming POST and ChatKit ------------------------------------------------------


async def logged_in_client(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def streamed(client: AsyncClient, **body) -> tuple[int, list[dict]]:
    """`POST /api/stream/message`: its status and frames (a refusal's one frame)."""
    answer = await client.post("/api/stream/message", body, content_type="application/json")
    if not answer.streaming:
        return answer.status_code, [json.loads(answer.content)]
    text = b"".join([chunk async for chunk in answer.streaming_content]).decode()
    return answer.status_code, [
        json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")
    ]


async def test_continue_over_the_streaming_post_streams_only_the_rest(limited, alice):
    thread, ws, received = await truncated_reply(alice)
    await ws.disconnect()
    reply_id, last_seq = received[-1]["message_id"], received[-1]["seq"]
    client = await logged_in_client(alice)
    body = {"command": "continue", "message_id": reply_id, "thread_id": str(thread.id)}
    status, more = await streamed(client, **body, client_id=str(uuid.uuid4()))
    assert status == 200
    assert [f["type"] for f in more] == ["token"] * (len(more) - 1) + ["complete"], more
    assert [f["seq"] for f in more] == list(range(last_seq + 1, last_seq + 1 + len(more)))
    assert reply_text(more) == "".join(MORE)
    _, reply = await messages_of(thread)
    assert reply.content == "".join(FIRST[:LIMIT] + MORE) and reply.truncated is False


async def test_continue_over_the_streaming_post_is_refused_cleanly(limited, alice, bob):
    limited.script("Continue exactly", tokens=MORE, delay_ms=100)
    thread, ws, received = await truncated_reply(alice)
    reply_id = received[-1]["message_id"]
    user_message, _ = await messages_of(thread)
    client = await logged_in_client(alice)
    body = {"command": "continue", "message_id": reply_id, "thread_id": str(thread.id)}
    for bad in (
        {"thread_id": None},  # a continue names its thread
        {"command": "stop"},  # not a command the streaming POST takes
        {"message_id": "nope"},
        {"message_id": str(user_message.id)},  # not a reply
    ):
        status, (frame,) = await streamed(client, **{**body, **bad})
        assert (status, frame["code"]) == (400, "bad_request"), bad
    # Someone else's thread is not found; a reply of another thread is refused.
    bobs, bob_ws, _ = await truncated_reply(bob)
    await bob_ws.disconnect()
    bob_client = await logged_in_client(bob)
    assert (await streamed(bob_client, **body))[0] == 404
    status, (frame,) = await streamed(bob_client, **{**body, "thread_id": str(bobs.id)})
    assert (status, frame["code"]) == (400, "bad_request")
    # While it runs (continued on the socket), another continue is `busy`.
    await send(ws, continue_command(reply_id))
    assert (await receive(ws))["type"] == "token"
    status, (frame,) = await streamed(client, **body)
    assert (status, frame["code"]) == (409, "busy")
    await frames_until_end(ws)
    # Not truncated any more.
    status, (frame,) = await streamed(client, **body)
    assert (status, frame["code"]) == (400, "bad_request")
    _, reply = await messages_of(thread)
    assert reply.content == "".join(FIRST[:LIMIT] + MORE) and reply.status == "complete"
    _, bobs_reply = await messages_of(bobs)
    assert bobs_reply.truncated is True and bobs_reply.status == "complete"
    await ws.disconnect()


def chatkit_continue(thread_id: str, item_id: str, **payload) -> bytes:
    action = Action(type="continue", payload=payload or None)
    request = ThreadsCustomActionReq(
        params=ThreadCustomActionParams(thread_id=thread_id, item_id=item_id, action=action)
    )
    return request.model_dump_json().encode()


async def chatkit_events(client: AsyncClient, body: bytes) -> tuple[int, list]:
    """`POST /api/chatkit`: its status and its events (or a JSON answer's body)."""
    answer = await client.post("/api/chatkit", body, content_type="application/json")
    if not answer.streaming:
        return answer.status_code, [json.loads(answer.content)]
    text = b"".join([chunk async for chunk in answer.streaming_content]).decode()
    return answer.status_code, [
        ck.EVENT.validate_json(line[6:]) for line in text.splitlines() if line.startswith("data: ")
    ]


async def test_chatkits_continue_action_grows_the_same_item(limited, alice):
    thread, ws, received = await truncated_reply(alice)
    await ws.disconnect()
    reply_id = received[-1]["message_id"]
    client = await logged_in_client(alice)
    status, events = await chatkit_events(client, chatkit_continue(str(thread.id), reply_id))
    assert status == 200
    assert "".join(ck.deltas(events)) == "".join(MORE)
    done = [e for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert [(e.item.id, e.item.content[0].text) for e in done] == [
        (reply_id, "".join(FIRST[:LIMIT] + MORE))
    ]
    assert not [e for e in events if isinstance(e, ThreadItemAddedEvent)]  # the same item
    _, reply = await messages_of(thread)
    assert reply.content == "".join(FIRST[:LIMIT] + MORE) and reply.truncated is False


async def test_chatkits_continue_is_refused_as_one_error_event(limited, alice, bob):
    thread, ws, received = await truncated_reply(alice)
    await ws.disconnect()
    reply_id = received[-1]["message_id"]
    user_message, _ = await messages_of(thread)
    client = await logged_in_client(alice)
    status, events = await chatkit_events(client, chatkit_continue(str(thread.id), "nope"))
    assert status == 200 and [type(e).__name__ for e in events] == ["ErrorEvent"]
    status, events = await chatkit_events(
        client, chatkit_continue(str(thread.id), str(user_message.id))
    )
    assert status == 200 and [type(e).__name__ for e in events] == ["ErrorEvent"]
    other = ThreadsCustomActionReq(
        params=ThreadCustomActionParams(thread_id=str(thread.id), action=Action(type="other"))
    )
    assert (await chatkit_events(client, other.model_dump_json().encode()))[0] == 400
    bob_client = await logged_in_client(bob)
    assert (await chatkit_events(bob_client, chatkit_continue(str(thread.id), reply_id)))[0] == 404
    _, reply = await messages_of(thread)
    assert reply.truncated is True and reply.content == "".join(FIRST[:LIMIT])
