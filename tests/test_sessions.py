"""A socket or event stream lives only as long as what opened it: logout, a password change,
deactivation and a client secret's expiry end it (4401), not just the next connection."""

import asyncio
import json

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from chat.models import Thread
from chatproject.asgi import application
from tests import chatkit_client as ck
from tests.helpers import ORIGIN, client_secret, receive, send, start_command
from tests.servers import cookie_header, login, shared_sites

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def session_socket(thread_id, client: Client) -> WebsocketCommunicator:
    headers = [
        (b"origin", ORIGIN),
        (b"host", b"127.0.0.1:8000"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    ws = WebsocketCommunicator(application, f"/ws/threads/{thread_id}/", headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    assert (await receive(ws))["type"] == "ready"
    return ws


async def closed_with(ws: WebsocketCommunicator, timeout: float = 5) -> int:
    """The close code the server ends the socket with (frames before it are skipped)."""
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


def set_password(user, password: str) -> None:
    user.set_password(password)
    user.save()


def deactivate(user) -> None:
    user.is_active = False
    user.save()


@pytest.mark.parametrize("ending", ["logout", "password change", "deactivation"])
async def test_a_session_socket_is_closed_when_its_session_ends(
    memory_layer, alice, settings, ending
):
    # Not the periodic check (an hour away): the logout, password change or deactivation
    # itself tells every socket of the user to check now.
    settings.SESSION_CHECK_SECONDS = 3600
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    client = await logged_in_client(alice)
    ws = await session_socket(thread.id, client)
    other = await session_socket(thread.id, await logged_in_client(alice))
    if ending == "logout":
        await database_sync_to_async(client.post)("/accounts/logout/")
    elif ending == "password change":
        await database_sync_to_async(set_password)(alice, "a-new-password-42")
    else:
        await database_sync_to_async(deactivate)(alice)
    assert await closed_with(ws) == 4401
    if ending == "logout":  # another session of the same user lives on
        await send(other, {"command": "heartbeat"})
        assert (await receive(other))["type"] == "heartbeat"
    else:
        assert await closed_with(other) == 4401


async def test_a_start_after_logout_is_refused_at_once(stub, memory_layer, alice, settings):
    settings.SESSION_CHECK_SECONDS = 3600  # not the periodic check: the start's own
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    client = await logged_in_client(alice)
    ws = await session_socket(thread.id, client)
    await database_sync_to_async(client.post)("/accounts/logout/")
    await send(ws, start_command("after logout"))
    assert await closed_with(ws) == 4401
    assert await database_sync_to_async(thread.messages.count)() == 0


async def test_a_bad_start_after_logout_is_told_4401_first(stub, memory_layer, alice, settings):
    """The credential is checked before anything else refuses a start: a command refused
    before the begin's first trip to the database checks it on its own."""
    settings.SESSION_CHECK_SECONDS = 3600
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    client = await logged_in_client(alice)
    ws = await session_socket(thread.id, client)
    await database_sync_to_async(client.post)("/accounts/logout/")
    await send(ws, {**start_command("after logout"), "time_zone": "Nowhere/Else"})
    assert await closed_with(ws) == 4401


async def test_a_client_secret_socket_is_closed_when_the_secret_expires(
    memory_layer, alice, settings
):
    settings.SESSION_CHECK_SECONDS = 0.2
    settings.CLIENT_SECRET_TTL = 2  # (whole seconds: it ends 1-2 s from now)
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    secret = await database_sync_to_async(client_secret)(alice)
    ws = WebsocketCommunicator(
        application, f"/ws/threads/{thread.id}/", subprotocols=["chat", f"auth.{secret}"]
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected and (await receive(ws))["type"] == "ready"
    await asyncio.sleep(0.3)
    await send(ws, {"command": "heartbeat"})
    assert (await receive(ws))["type"] == "heartbeat", "alive before expiry"
    assert await closed_with(ws, timeout=5) == 4401


async def test_a_thread_event_stream_ends_at_logout(memory_layer, alice, settings):
    from django.test import AsyncClient

    settings.SESSION_CHECK_SECONDS = 3600
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    client = await logged_in_client(alice)
    streaming = AsyncClient()
    streaming.cookies["sessionid"] = client.cookies["sessionid"].value
    response = await streaming.get(f"/api/threads/{thread.id}/events/")
    assert response.status_code == 200
    chunks = response.streaming_content
    first = await asyncio.wait_for(anext(chunks), 5)
    assert b"retry" in first
    await database_sync_to_async(client.post)("/accounts/logout/")

    async def drain() -> None:
        async for _ in chunks:
            pass

    await asyncio.wait_for(drain(), 5)  # the stream ends by itself


@pytest.fixture(scope="module")
def two_processes(stub_server, tmp_path_factory):
    with shared_sites(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"lena": "lena-pw"},
        SESSION_CHECK_SECONDS="3600",  # the periodic check is the net; logout itself tells
    ) as servers:
        yield servers


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
async def test_logout_on_one_process_closes_the_sessions_sockets_on_every_process(
    two_processes, stub
):
    a, b = two_processes
    user = login(a.url, "lena", "lena-pw")
    other_session = login(b.url, "lena", "lena-pw")
    thread = user.post("/api/threads/", json={}).json()["id"]
    secret = user.post("/api/chatkit/session").json()["client_secret"]
    stub.script("slow for logout", tokens=[f" t{i}" for i in range(3000)], delay_ms=20)

    async def opened(server, client):
        ws = await ws_connect(
            f"{server.ws_url}/ws/threads/{thread}/",
            origin=server.url,
            additional_headers={"Cookie": cookie_header(client)},
        )
        assert json.loads(await ws.recv())["type"] == "ready"
        return ws

    on_a, on_b, kept = await opened(a, user), await opened(b, user), await opened(b, other_session)
    by_secret = await ws_connect(
        f"{b.ws_url}/ws/threads/{thread}/", subprotocols=["chat", f"auth.{secret}"]
    )
    assert json.loads(await by_secret.recv())["type"] == "ready"
    # A reply streaming over POST /api/stream/message on b, a ChatKit reply on a.
    sse = httpx.AsyncClient(
        base_url=b.url, cookies=user.cookies, headers={"Origin": b.url}, timeout=30
    )
    chatkit = ck.ChatKitClient(a.url, user)
    async with sse.stream(
        "POST", "/api/stream/message", json={"message": "slow for logout"}
    ) as streaming:
        assert streaming.status_code == 200
        sse_lines = streaming.aiter_lines()
        while "token" not in await anext(sse_lines):
            pass
        chatkit_events = chatkit.events(ck.create("slow for logout"))
        while not ck.deltas([shown := await anext(chatkit_events)]):
            assert shown.type != "error", shown

        assert user.post("/accounts/logout/").status_code in (200, 302)
        for ws in (on_a, on_b, by_secret):
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # frames of the streaming replies come first
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 4401
        for ended in (sse_lines, chatkit_events):  # each ends by itself
            await asyncio.wait_for(_drain(ended), 10)
    await sse.aclose()
    await chatkit.close()
    await kept.send(json.dumps({"command": "heartbeat"}))
    while (frame := json.loads(await kept.recv()))["type"] != "heartbeat":
        pass
    assert frame["type"] == "heartbeat", "another session lives on"
    await kept.close()


async def _drain(lines) -> None:
    async for _ in lines:
        pass


async def test_chatkit_streams_count_among_the_users_sockets(stub, memory_layer, alice, settings):
    from django.test import AsyncClient

    settings.MAX_SOCKETS_PER_USER = 1
    stub.script("hold the stream", tokens=[f" t{i}" for i in range(400)], delay_ms=10)
    client = await logged_in_client(alice)
    secret = await minted_secret(client)
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    streaming = await AsyncClient().post(
        "/api/chatkit",
        ck.create("hold the stream").model_dump_json(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert streaming.status_code == 200
    chunks = streaming.streaming_content
    await asyncio.wait_for(anext(chunks), 5)
    ws = WebsocketCommunicator(
        application, f"/ws/threads/{thread.id}/", subprotocols=["chat", f"auth.{secret}"]
    )
    await ws.connect(timeout=5)
    assert await closed_with(ws) == 4429, "the ChatKit stream holds the one socket allowed"
    async for _ in chunks:  # the reply ends, and its stream with it
        pass
    await secret_socket(thread.id, secret)


@database_sync_to_async
def minted_secret(client: Client) -> str:
    answer = client.post("/api/chatkit/session")
    assert answer.status_code == 200
    return answer.json()["client_secret"]


async def secret_socket(thread_id, secret: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(
        application, f"/ws/threads/{thread_id}/", subprotocols=["chat", f"auth.{secret}"]
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected and (await receive(ws))["type"] == "ready"
    return ws


async def test_a_client_secret_dies_with_the_session_that_minted_it(memory_layer, alice, settings):
    settings.SESSION_CHECK_SECONDS = 3600
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    minter, other = await logged_in_client(alice), await logged_in_client(alice)
    secret, kept = await minted_secret(minter), await minted_secret(other)
    ws = await secret_socket(thread.id, secret)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    api = Client()
    assert (await database_sync_to_async(api.get)("/api/threads/", **bearer)).status_code == 200

    await database_sync_to_async(minter.post)("/accounts/logout/")
    assert await closed_with(ws) == 4401
    assert (await database_sync_to_async(api.get)("/api/threads/", **bearer)).status_code == 401
    chatkit = await database_sync_to_async(api.post)(
        "/api/chatkit",
        ck.create("after logout").model_dump_json(),
        content_type="application/json",
        **bearer,
    )
    assert chatkit.status_code == 401
    assert await database_sync_to_async(thread.messages.count)() == 0
    still = {"HTTP_AUTHORIZATION": f"Bearer {kept}"}
    assert (await database_sync_to_async(api.get)("/api/threads/", **still)).status_code == 200, (
        "a secret of another session of the same user lives on"
    )


@pytest.mark.django_db
def test_a_sessions_check_is_djangos_and_one_query_when_nothing_changed(alice, bob):
    """`auth.session_holds` says what Django's own check says for every way a session ends,
    and re-checking an unchanged session costs one query (no decoding, no HMAC)."""
    import datetime

    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from chat import auth

    def session_of(user) -> str:
        client = Client()
        client.force_login(user)
        return client.session.session_key

    def holds(key: str, user) -> bool:
        ours = auth.session_holds(key, user.pk)  # first: Django's check may end the session
        django_says = (found := auth.session_user(key)) is not None and found.pk == user.pk
        assert ours == django_says
        return ours

    key = session_of(alice)
    assert holds(key, alice)
    with CaptureQueriesContext(connection) as queries:
        assert auth.session_holds(key, alice.pk)
    assert len(queries) == 1
    assert not holds(key, bob), "someone else's session"
    assert not holds("no-such-session", alice)

    alice.set_password("a new one")  # every session of hers ends
    alice.save()
    assert not holds(key, alice)

    key = session_of(alice)
    assert holds(key, alice)
    alice.is_active = False
    alice.save()
    assert not holds(key, alice)
    alice.is_active = True
    alice.save()
    assert holds(key, alice)

    Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert not holds(key, alice)
    key = session_of(alice)
    Session.objects.filter(session_key=key).delete()  # logged out
    assert not holds(key, alice)
