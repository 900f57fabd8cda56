"""The thread WebSocket and the user's, driven through the real ASGI stack against the stub
provider."""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, Thread
from tests.helpers import (
    client_secret,
    connect,
    frames_until_end,
    new_thread,
    receive,
    reply_text,
    send,
    start_command,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def messages_of(thread: Thread) -> list[Message]:
    return list(thread.messages.order_by("created_at", "id"))


async def test_reply_frames_arrive_in_design_order_and_the_saved_reply_is_the_stub_text(
    stub, layer, alice
):
    tokens = ["Hello", " there", ",", " how", " are", " you", " doing", " today", "?"]
    stub.script("greet-me", tokens=tokens, delay_ms=5)
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    ready = await receive(ws)
    assert ready["type"] == "ready" and ready["thread_id"] == str(thread.id)
    assert ready["active"] is None

    await send(ws, start_command("please greet-me"))
    received = await frames_until_end(ws)

    types = [f["type"] for f in received]
    assert types[0] == "message" and received[0]["message"]["role"] == "user"
    assert types[1] == "start" and received[1]["seq"] == 0 and received[1]["model"] == "stub-model"
    assert set(types[2:-1]) == {"token"}
    assert types[-1] == "complete" and received[-1]["status"] == "complete"
    seqs = [f["seq"] for f in received[1:]]
    assert seqs == list(range(len(seqs))), "seq starts at 0 and grows by one per frame"
    assert all(isinstance(f["ts"], int) for f in received)
    metrics = received[-1]["metrics"]
    assert metrics["totalTokens"] == len(tokens)
    assert metrics["timeToFirstTokenMs"] is not None

    user_message, reply = await messages_of(thread)
    assert user_message.content == "please greet-me" and user_message.role == "user"
    assert reply.content == "".join(tokens) == reply_text(received)
    assert reply.status == "complete" and reply.token_count == len(tokens)
    assert reply.elapsed_ms is not None and reply.first_token_ms is not None
    await ws.disconnect()


async def test_the_thread_history_goes_to_the_model_as_input(stub, memory_layer, alice):
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("first question"))
    await frames_until_end(ws)
    await send(ws, start_command("second question"))
    await frames_until_end(ws)

    last_request = [r for r in stub.requests if r["path"].endswith("/chat/completions")][-1]
    sent = [(m["role"], m["content"]) for m in last_request["body"]["messages"]]
    assert sent[0][0] == "system"
    assert sent[1:] == [
        ("user", "first question"),
        ("assistant", "Echo: first question"),
        ("user", "second question"),
    ]
    await ws.disconnect()


async def test_an_anonymous_socket_is_closed_with_4401(memory_layer, alice):
    thread = await new_thread(alice)
    ws = await connect(thread.id, None)
    assert (await ws.receive_output(timeout=5))["code"] == 4401


async def test_another_users_thread_and_a_missing_thread_are_closed_with_4404(
    memory_layer, alice, bob
):
    thread = await new_thread(alice)
    for thread_id in (thread.id, uuid.uuid4(), "not-a-uuid"):
        ws = await connect(thread_id, bob)
        assert (await ws.receive_output(timeout=5))["code"] == 4404


async def test_bad_frames_get_an_error_frame_and_the_socket_still_works(
    stub, memory_layer, alice, settings
):
    settings.MAX_MESSAGE_CHARS = 100
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)

    bad = {
        "not json": ("{oops", "bad_request"),
        "not an object": ("[1, 2]", "bad_request"),
        "unknown command": ({"command": "fly"}, "bad_request"),
        "no command": ({"message": "hi"}, "bad_request"),
        "missing message": ({"command": "start", "client_id": str(uuid.uuid4())}, "bad_request"),
        "empty message": (start_command("   "), "bad_request"),
        "bad client_id": ({"command": "start", "message": "hi", "client_id": "x"}, "bad_request"),
        "too long": (start_command("x" * 101), "too_large"),
    }
    for label, (payload, code) in bad.items():
        await send(ws, payload)
        frame = await receive(ws)
        assert frame["type"] == "error", label
        assert frame["code"] == code, label
        assert frame["message"] and frame["recoverable"] is False, label
        assert "message_id" not in frame, label

    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await receive(ws))["code"] == "bad_request"

    assert await messages_of(thread) == [], "nothing was saved from bad frames"
    await send(ws, {"command": "heartbeat"})
    assert (await receive(ws))["type"] == "heartbeat"
    await send(ws, start_command("still works"))
    received = await frames_until_end(ws)
    assert received[-1]["status"] == "complete"
    assert reply_text(received) == "Echo: still works"
    await ws.disconnect()


async def test_a_provider_error_mid_stream_saves_the_reply_as_error_with_the_text_shown(
    stub, memory_layer, alice
):
    stub.script("break-please", tokens=["One", " two", " three", " four"], error_after=2)
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("break-please"))
    received = await frames_until_end(ws)

    end = received[-1]
    assert end["type"] == "error" and end["code"] == "provider_error"
    assert end["recoverable"] is True
    assert end["seq"] == received[-2]["seq"] + 1
    shown = reply_text(received)
    assert shown == "One two"
    user_message, reply = await messages_of(thread)
    assert user_message.content == "break-please"
    assert reply.status == "error" and reply.content == shown
    assert reply.error_code == "provider_error"
    await ws.disconnect()


async def test_an_http_500_before_the_first_token_ends_the_reply_as_error(
    stub, memory_layer, alice
):
    stub.script("fail-now", status=500)
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("fail-now"))
    received = await frames_until_end(ws)
    assert received[-1]["code"] == "provider_error" and received[-1]["recoverable"] is True
    assert "500" in received[-1]["message"]
    _, reply = await messages_of(thread)
    assert reply.status == "error" and reply.content == ""
    await ws.disconnect()


async def test_stop_ends_the_reply_as_cancelled_and_keeps_the_text_shown(stub, memory_layer, alice):
    stub.script("go-slow", tokens=[f" w{i}" for i in range(200)], delay_ms=20)
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("go-slow"))
    received = []
    while sum(f["type"] == "token" for f in received) < 3:
        received.append(await receive(ws))
    await send(ws, {"command": "stop"})
    received += await frames_until_end(ws)

    assert received[-1]["type"] == "complete" and received[-1]["status"] == "cancelled"
    _, reply = await messages_of(thread)
    assert reply.status == "cancelled"
    assert reply.content == reply_text(received)
    assert 0 < len(reply.content) < len("".join(f" w{i}" for i in range(200)))
    await ws.disconnect()


async def test_the_same_client_id_twice_gives_one_user_message_and_one_reply(
    stub, memory_layer, alice
):
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    command = start_command("only once")
    await send(ws, command)
    await frames_until_end(ws)
    await send(ws, command)
    # (`thread` frames of the first send may come first: the cut title, then the model's.)
    while (frame := await receive(ws))["type"] == "thread":
        pass
    assert frame["type"] == "ready" and frame["active"] is None
    assert [m.role for m in await messages_of(thread)] == ["user", "assistant"]
    await ws.disconnect()


async def test_a_second_start_while_a_reply_runs_is_busy(stub, memory_layer, alice):
    stub.script("long-one", tokens=["a"] * 50, delay_ms=20)
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("long-one"))
    assert (await receive(ws))["type"] == "message"
    await send(ws, start_command("another"))
    while (frame := await receive(ws))["type"] != "error":
        pass
    assert frame["code"] == "busy" and frame["recoverable"] is True
    await frames_until_end(ws)
    assert len(await messages_of(thread)) == 2
    await ws.disconnect()


async def test_a_socket_that_reconnects_mid_reply_continues_without_gap_or_duplicate(
    stub, layer, alice
):
    tokens = [f" t{i}" for i in range(60)]
    stub.script("resume-me", tokens=tokens, delay_ms=40)
    thread = await new_thread(alice)
    first = await connect(thread.id, alice)
    await receive(first)
    await send(first, start_command("resume-me"))
    while (await receive(first))["type"] != "token":
        pass
    await first.disconnect()  # closing the socket must not stop the reply
    await asyncio.sleep(0.1)

    second = await connect(thread.id, alice)
    ready = await receive(second)
    assert ready["active"] is not None
    text = ready["active"]["content"]
    last_seq = ready["active"]["seq"]
    rest = await frames_until_end(second)
    for frame in rest:
        assert frame["seq"] == last_seq + 1
        last_seq = frame["seq"]
    text += reply_text(rest)
    _, reply = await messages_of(thread)
    assert reply.status == "complete"
    assert text == reply.content == "".join(tokens)
    await second.disconnect()


async def test_closing_the_only_socket_does_not_stop_the_reply(stub, memory_layer, alice):
    stub.script("keep-going", tokens=["x"] * 20, delay_ms=10)
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("keep-going"))
    await receive(ws)
    await ws.disconnect()
    for _ in range(100):
        _, reply = await messages_of(thread)
        if reply.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert reply.status == "complete" and reply.content == "x" * 20


async def test_regenerate_adds_a_new_reply_beside_the_old_for_every_tab(stub, memory_layer, alice):
    thread = await new_thread(alice, title="titled")
    ws, other_tab = await connect(thread.id, alice), await connect(thread.id, alice)
    await receive(ws), await receive(other_tab)
    await send(ws, start_command("say it"))
    first = await frames_until_end(ws)
    await frames_until_end(other_tab)
    old_reply_id = first[-1]["message_id"]

    stub.script("say it", tokens=["Second", " take"])
    command = {"command": "regenerate", "client_id": str(uuid.uuid4())}
    await send(ws, command)
    for tab in (ws, other_tab):
        again = await frames_until_end(tab)
        placed = again[0]["message"]  # the new reply takes the old one's place on screen
        assert again[0]["type"] == "message" and placed["role"] == "assistant"
        assert placed["siblings"] == {
            "index": 1,
            "count": 2,
            "ids": [old_reply_id, again[-1]["message_id"]],
        }
        assert reply_text(again) == "Second take"
    user_message, old, reply = await messages_of(thread)
    assert user_message.content == "say it" and reply.content == "Second take"
    assert old.content == "Echo: say it", "the old reply is kept"

    await send(ws, command)  # a retried regenerate changes nothing
    assert (await receive(ws))["type"] == "ready"
    assert len(await messages_of(thread)) == 3
    await ws.disconnect()
    await other_tab.disconnect()


async def test_edit_of_any_message_on_the_path_makes_a_new_branch(stub, memory_layer, alice):
    thread = await new_thread(alice, title="titled")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("first"))
    await frames_until_end(ws)
    await send(ws, start_command("typo here"))
    await frames_until_end(ws)
    first_user, first_reply, typo, typo_reply = await messages_of(thread)

    await send(ws, {"command": "edit", "message_id": str(first_reply.id), "message": "x"})
    refused = await receive(ws)
    assert refused["type"] == "error" and refused["code"] == "bad_request", "a reply is no edit"

    await send(
        ws,
        {
            "command": "edit",
            "message_id": str(typo.id),
            "message": "fixed",
            "client_id": str(uuid.uuid4()),
        },
    )
    received = await frames_until_end(ws)
    assert received[0]["type"] == "message" and received[0]["message"]["content"] == "fixed"
    assert received[0]["message"]["parent_id"] == str(first_reply.id)
    assert reply_text(received) == "Echo: fixed"
    await send(ws, {"command": "edit", "message_id": str(first_user.id), "message": "earlier"})
    received = await frames_until_end(ws)
    assert reply_text(received) == "Echo: earlier", "an earlier message can be edited too"
    contents = [m.content for m in await messages_of(thread)]
    assert contents == [
        "first",
        "Echo: first",
        "typo here",
        "Echo: typo here",
        "fixed",
        "Echo: fixed",
        "earlier",
        "Echo: earlier",
    ], "nothing was deleted"
    await ws.disconnect()


async def test_a_new_thread_is_titled_from_its_first_message_then_by_the_model(
    stub, memory_layer, alice
):
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("Plan a weekend in Lisbon with kids, on a small budget please"))
    await frames_until_end(ws)
    cut = await receive(ws)
    assert cut["type"] == "thread"
    assert cut["thread"]["title"] == "Plan a weekend in Lisbon with kids, on a small budget please"
    by_model = await receive(ws)
    assert by_model["type"] == "thread" and by_model["thread"]["title"].startswith("Echo: Write")
    await database_sync_to_async(thread.refresh_from_db)()
    assert thread.title == by_model["thread"]["title"]
    await ws.disconnect()


async def test_a_client_secret_opens_the_socket_as_a_subprotocol_without_origin(
    stub, memory_layer, alice, bob
):
    from channels.testing import WebsocketCommunicator

    from chatproject.asgi import application

    thread = await new_thread(alice, title="t")
    secret = await database_sync_to_async(client_secret)(alice)
    ws = WebsocketCommunicator(
        application, f"/ws/threads/{thread.id}/", subprotocols=["chat", f"auth.{secret}"]
    )
    connected, subprotocol = await ws.connect(timeout=5)
    assert connected and subprotocol == "chat", "the secret is never echoed back"
    assert (await receive(ws))["type"] == "ready"
    await send(ws, start_command("by secret"))
    assert reply_text(await frames_until_end(ws)) == "Echo: by secret"
    await ws.disconnect()

    bobs = await database_sync_to_async(client_secret)(bob)
    for offered, code in ((bobs, 4404), (secret[:-2] + "xx", 4401), ("cs_junk", 4401)):
        ws = WebsocketCommunicator(
            application, f"/ws/threads/{thread.id}/", subprotocols=["chat", f"auth.{offered}"]
        )
        await ws.connect(timeout=5)
        assert (await ws.receive_output(timeout=5))["code"] == code


@pytest.mark.parametrize(
    "origin, forwarded, accepted",
    [
        (b"https://evil.example", b"", False),
        (b"http://127.0.0.1:9999", b"", False),  # another port is another origin
        (b"https://127.0.0.1:8000", b"", False),  # and another scheme
        (b"http://localhost:8000", b"", False),  # and another host, allowed or not
        (b"null", b"", False),
        (b"http://127.0.0.1:8000", b"", True),
        (b"https://127.0.0.1:8000", b"https", True),  # behind a TLS proxy that says so
        (b"http://127.0.0.1:8000", b"https", False),
    ],
)
async def test_a_session_socket_opens_only_from_the_sites_own_origin(
    memory_layer, alice, settings, origin, forwarded, accepted
):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    thread = await new_thread(alice)
    from channels.testing import WebsocketCommunicator

    from chatproject.asgi import application
    from tests.helpers import session_cookie

    headers = [
        (b"origin", origin),
        (b"host", b"127.0.0.1:8000"),
        (b"cookie", (await session_cookie(alice)).encode()),
    ]
    if forwarded:
        headers.append((b"x-forwarded-proto", forwarded))
    ws = WebsocketCommunicator(application, f"/ws/threads/{thread.id}/", headers=headers)
    connected, _ = await ws.connect(timeout=5)
    if accepted:
        assert connected and (await receive(ws))["type"] == "ready"
        await ws.disconnect()
    else:
        assert not connected


async def test_starting_more_replies_a_minute_than_allowed_is_rate_limited(
    stub, memory_layer, alice, settings
):
    settings.REPLIES_PER_MINUTE = 2
    thread = await new_thread(alice, title="t")
    ws = await connect(thread.id, alice)
    await receive(ws)
    for text in ("one", "two"):
        await send(ws, start_command(text))
        await frames_until_end(ws)
    await send(ws, start_command("three"))
    frame = await receive(ws)
    assert frame["type"] == "error" and frame["code"] == "rate_limited" and frame["recoverable"]
    assert len(await messages_of(thread)) == 4, "the refused message was not saved"
    await ws.disconnect()


async def test_a_heartbeat_tells_where_the_threads_reply_stands(stub, memory_layer, alice):
    stub.script("beat", tokens=["b"] * 100, delay_ms=10)
    thread = await new_thread(alice, title="t")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("beat"))
    while (frame := await receive(ws))["type"] != "token":
        pass
    await send(ws, {"command": "heartbeat"})
    while (beat := await receive(ws))["type"] != "heartbeat":
        pass
    assert beat["active"]["message_id"] == frame["message_id"]
    assert beat["active"]["seq"] >= frame["seq"] and "content" not in beat["active"]
    await frames_until_end(ws)
    await send(ws, {"command": "heartbeat"})
    assert (await receive(ws)) | {"ts": 0} == {"type": "heartbeat", "ts": 0, "active": None}
    await ws.disconnect()


async def test_one_user_has_at_most_max_replies_in_flight_over_all_threads(
    stub, layer, alice, bob, settings
):
    settings.MAX_REPLIES_IN_FLIGHT = 2
    stub.script("long-running", tokens=["z"] * 200, delay_ms=20)
    sockets = []
    for _ in range(3):
        ws = await connect((await new_thread(alice)).id, alice)
        await receive(ws)
        sockets.append(ws)
    for ws in sockets[:2]:
        await send(ws, start_command("long-running"))
        assert (await receive(ws))["type"] == "message"
    await send(sockets[2], start_command("long-running"))
    while (frame := await receive(sockets[2]))["type"] != "error":
        pass
    assert frame["code"] == "rate_limited" and frame["recoverable"] is True
    # Another user is not held back by alice's replies.
    bobs = await connect((await new_thread(bob)).id, bob)
    await receive(bobs)
    await send(bobs, start_command("short"))
    assert (await frames_until_end(bobs))[-1]["type"] == "complete"
    # Once one of alice's replies ends, she may start another.
    await send(sockets[0], {"command": "stop"})
    while (await receive(sockets[0]))["type"] not in ("complete", "error"):
        pass
    for _ in range(50):  # its count ends just after its last frame
        await send(sockets[2], start_command("again"))
        while (first := await receive(sockets[2]))["type"] == "thread":
            pass  # the stopped reply's thread got its title: every tab's list hears of it
        if first["type"] != "error":  # accepted (a refusal is an error frame of its own)
            break
        assert first["code"] == "rate_limited"
        await asyncio.sleep(0.1)
    assert first["type"] == "message"
    assert reply_text(await frames_until_end(sockets[2])) == "Echo: again"
    await send(sockets[1], {"command": "stop"})
    await frames_until_end(sockets[1])
    for ws in (*sockets, bobs):
        await ws.disconnect()


async def test_the_seeds_heartbeat_shape_is_answered_as_a_heartbeat(stub, memory_layer, alice):
    # The seed's client sends {"type": "heartbeat"} every 30 s and only wants an answer.
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    for _ in range(2):
        await send(ws, {"type": "heartbeat"})
        beat = await receive(ws)
        assert beat["type"] == "heartbeat" and beat["active"] is None
    await send(ws, start_command("still answered"))
    assert (await frames_until_end(ws))[-1]["status"] == "complete"
    await ws.disconnect()


async def test_a_rename_or_delete_reaches_the_owners_other_tabs_once_and_no_one_else(
    memory_layer, alice, bob
):
    from django.test import Client

    mine, other = await new_thread(alice, "open here"), await new_thread(alice, "elsewhere")
    here, there = await connect(mine.id, alice), await connect(other.id, alice)
    bobs = await connect((await new_thread(bob, "bob's")).id, bob)
    for ws in (here, there, bobs):
        await receive(ws)
    api = Client()
    await database_sync_to_async(api.force_login)(alice)

    renamed = await database_sync_to_async(api.patch)(
        f"/api/threads/{other.id}/", {"title": "renamed"}, content_type="application/json"
    )
    assert renamed.status_code == 200
    for ws in (here, there):  # the open thread's list, and the renamed thread's own tab
        frame = await receive(ws)
        assert frame["type"] == "thread" and frame["thread"]["id"] == str(other.id)
        assert frame["thread"]["title"] == "renamed"

    created = await database_sync_to_async(api.post)("/api/threads/", {"title": "new"})
    frame = await receive(here)
    assert frame["type"] == "thread" and frame["thread"]["id"] == created.json()["id"]
    assert (await receive(there))["thread"]["title"] == "new"

    assert (
        await database_sync_to_async(api.delete)(f"/api/threads/{other.id}/")
    ).status_code == 204
    for ws in (here, there):
        assert await receive(ws) | {"ts": 0} == {
            "type": "thread_deleted",
            "ts": 0,
            "thread_id": str(other.id),
        }
    await send(here, {"command": "heartbeat"})
    assert (await receive(here))["type"] == "heartbeat", "each event came once"
    assert await bobs.receive_nothing(timeout=0.3), "another user hears nothing"
    for ws in (here, there, bobs):
        await ws.disconnect()


async def user_socket(user):
    """The user's socket (`/ws/user/`), past its `ready`."""
    ws = await connect(None, user, path="/ws/user/")
    assert await receive(ws) | {"ts": 0} == {
        "type": "ready",
        "ts": 0,
        "thread_id": None,
        "active": None,
    }
    return ws


async def test_the_users_socket_carries_their_thread_list_and_never_another_users(
    stub, memory_layer, alice, bob
):
    from django.test import Client

    alices, bobs = await user_socket(alice), await user_socket(bob)
    api = Client()
    await database_sync_to_async(api.force_login)(alice)
    call = database_sync_to_async

    made = (await call(api.post)("/api/threads/", {"title": "made"})).json()
    frame = await receive(alices)
    assert frame["type"] == "thread" and frame["thread"]["id"] == made["id"]
    assert (frame["thread"]["title"], frame["thread"]["pinned"]) == ("made", False)
    url = f"/api/threads/{made['id']}/"
    await call(api.patch)(url, {"title": "renamed"}, content_type="application/json")
    assert (await receive(alices))["thread"]["title"] == "renamed"
    await call(api.patch)(url, {"pinned": True}, content_type="application/json")
    assert (await receive(alices))["thread"]["pinned"] is True

    # A reply on a thread sends its frames to that thread's sockets, not here; its title does.
    ws = await connect(made["id"], alice)
    await receive(ws)
    await send(ws, start_command("hello there"))
    assert reply_text(await frames_until_end(ws)) == "Echo: hello there"
    await ws.disconnect()

    assert (await call(api.delete)(url)).status_code == 204
    while (frame := await receive(alices))["type"] == "thread":
        assert frame["thread"]["id"] == made["id"]  # a title, never a reply's frame
    assert frame | {"ts": 0} == {"type": "thread_deleted", "ts": 0, "thread_id": made["id"]}

    await send(alices, {"command": "heartbeat"})
    assert (await receive(alices))["type"] == "heartbeat", "nothing else came"
    await send(alices, {"command": "start", "message": "x", "client_id": str(uuid.uuid4())})
    assert (await receive(alices))["code"] == "bad_request"
    await send(alices, {"command": "resync"})
    assert (await receive(alices))["type"] == "ready"
    assert await bobs.receive_nothing(timeout=0.3), "another user hears nothing"
    for socket in (alices, bobs):
        await socket.disconnect()


async def test_the_users_socket_is_refused_to_no_one_and_to_another_sites_page(memory_layer, alice):
    anonymous = await connect(None, None, path="/ws/user/")
    assert (await anonymous.receive_output(timeout=5))["code"] == 4401
    from channels.testing import WebsocketCommunicator

    from chatproject.asgi import application
    from tests.helpers import session_cookie

    foreign = WebsocketCommunicator(
        application,
        "/ws/user/",
        headers=[
            (b"origin", b"http://evil.example"),
            (b"host", b"127.0.0.1:8000"),
            (b"cookie", (await session_cookie(alice)).encode()),
        ],
    )
    connected, _ = await foreign.connect(timeout=5)
    assert not connected


async def test_an_idle_socket_keeps_few_objects_for_the_garbage_collector(
    memory_layer, alice, settings
):
    """What an open, idle socket keeps is scanned by every full collection of the process
    (docs/performance.md, "Idle sockets"): through the whole stack, one socket's share stays
    a bounded count, not the ~190 objects it was. (The in-process communicator's own queues
    and task are counted too; daphne's and autobahn's objects are not.)"""
    import gc

    settings.MAX_SOCKETS_PER_USER = 0
    threads = [await new_thread(alice) for _ in range(40)]
    from channels.testing import WebsocketCommunicator

    from chatproject.asgi import application
    from tests.helpers import ORIGIN, session_cookie

    # One login for them all: a login's own objects (the log records a test run keeps of
    # it) are not the socket's.
    cookie = (await session_cookie(alice)).encode()

    async def opened_on(thread) -> WebsocketCommunicator:
        headers = [(b"origin", ORIGIN), (b"host", b"127.0.0.1:8000"), (b"cookie", cookie)]
        socket = WebsocketCommunicator(application, f"/ws/threads/{thread.id}/", headers=headers)
        assert (await socket.connect(timeout=5))[0]
        assert (await receive(socket))["type"] == "ready"
        return socket

    opened = [await opened_on(threads[0])]  # the first socket makes the one-offs
    gc.collect()
    before = len(gc.get_objects())
    for thread in threads[1:]:
        opened.append(await opened_on(thread))
    gc.collect()
    per_socket = (len(gc.get_objects()) - before) / (len(opened) - 1)
    for ws in opened:
        await ws.disconnect()
    assert per_socket <= 115, per_socket  # 127 with channels' session stack and two more frames
