"""A reply cut by the token limit (`truncated`), and `continue`, which extends it (issue 24)."""

import uuid

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, Thread
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
