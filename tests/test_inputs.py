"""Inputs that used to give a 500 or close the socket with 1011: each gets a clear 4xx or an
`error` frame, the socket stays open, and nothing is written."""

import base64
import json
import logging

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat.models import Message, Thread
from chatproject.asgi import application
from tests.helpers import ORIGIN, connect, make_thread, new_thread, receive, send

DEEP = "[" * 5_000 + "]" * 5_000  # past Python's recursion limit in json.loads


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


@database_sync_to_async
def message_count(thread: Thread) -> int:
    return thread.messages.count()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws/nowhere/", "/ws/threads/", "/ws/threads/x/y/"])
async def test_a_websocket_on_no_route_is_closed_with_4404_not_an_error(memory_layer, path):
    headers = [(b"origin", ORIGIN), (b"host", b"127.0.0.1:8000")]
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4404}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "frame, expected",
    [
        (DEEP, "nested too deeply"),
        (json.dumps({"command": "start", "message": "bad \ud800 half"}), "lone surrogate"),
        (json.dumps({"command": "start", "message": "nul \x00 inside"}), "NUL"),
    ],
    ids=["deep-json", "lone-surrogate", "nul"],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open(
    stub, memory_layer, alice, frame, expected
):
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    assert (await receive(ws))["type"] == "ready"
    await send(ws, frame)
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert expected in error["message"]
    await send(ws, {"command": "heartbeat"})
    assert (await receive(ws))["type"] == "heartbeat"
    assert await message_count(thread) == 0
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
def test_deep_json_in_an_api_write_is_a_400(alice_client):
    response = alice_client.post("/api/threads/", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert Thread.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_deep_json_and_bad_text_in_a_streaming_post_are_400s(stub, memory_layer, alice_client):
    bad = [DEEP, json.dumps({"message": "nul \x00"}), json.dumps({"message": "\ud800"})]
    for body in bad:
        response = alice_client.post(
            "/api/stream/message",
            body,
            content_type="application/json",
            HTTP_ORIGIN="http://testserver",
        )
        assert response.status_code == 400, body[:40]
    assert Message.objects.count() == 0
    # Refused sends without a thread_id leave no empty thread behind (rate limits alike).
    assert Thread.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_forged_cursor_is_a_404_not_a_500(alice_client, alice):
    thread = make_thread(alice)
    forged = [
        base64.b64encode(b"p=not-a-date").decode(),
        base64.b64encode(b"r=1&p=2026-13-45").decode(),
        base64.b64encode(b"o=99999999999999999999999&p=x").decode(),
    ]
    for cursor in forged:
        for url in ("/api/threads/", f"/api/threads/{thread.id}/messages/"):
            assert alice_client.get(url, {"cursor": cursor}).status_code == 404, (url, cursor)


@pytest.mark.django_db(transaction=True)
def test_a_nul_in_a_search_is_ignored(alice_client, alice):
    make_thread(alice, "apples")
    response = alice_client.get("/api/threads/", {"search": "app\x00les"})
    assert response.status_code == 200
    assert [t["title"] for t in response.json()["results"]] == ["apples"]


@pytest.mark.django_db
def test_static_files_are_served_and_a_path_out_of_them_is_a_plain_404(caplog):
    client = Client()
    assert client.get("/static/chat/main.js").status_code == 200
    with caplog.at_level(logging.ERROR):
        for path in ("/static/..%2fchatproject/settings.py", "/static/../chatproject/settings.py"):
            response = client.get(path)
            assert response.status_code == 404
            assert b"SECRET_KEY" not in response.content
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
