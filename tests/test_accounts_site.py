"""The settings page over a real daphne: the user's instructions reach the model on every
transport (the page's WebSocket, the streaming POST, ChatKit), and a password change closes
another session's WebSocket (4401) at once, not at the next periodic check."""

import asyncio
import json
import re
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from chat import frames
from tests import chatkit_client as ck
from tests.servers import cookie_header, frames_until, login

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio,
    pytest.mark.site(
        {"iris": "iris-pw-1", "paul": "paul-pw-1"},
        SESSION_CHECK_SECONDS="3600",  # the change itself must end the socket
    ),
]

OWN = "Answer in French, please."


def set_instructions(http: httpx.Client, text: str) -> None:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', http.get("/settings/").text)
    saved = http.post(
        "/settings/",
        data={"instructions": text, "theme": "system", "csrfmiddlewaretoken": token[1]},
    )
    assert saved.status_code == 302, saved.text[:300]


def system_prompts(stub) -> list[str]:
    return [
        next(m["content"] for m in r["body"]["messages"] if m["role"] == "system")
        for r in stub.requests
        if r["path"].endswith("/chat/completions")
    ]


async def socket(site, http: httpx.Client, thread: str):
    ws = await ws_connect(
        f"{site.ws_url}/ws/threads/{thread}/",
        origin=site.url,
        additional_headers={"Cookie": cookie_header(http)},
    )
    assert json.loads(await ws.recv())["type"] == "ready"
    return ws


async def test_the_users_instructions_reach_the_model_on_every_transport(site, stub):
    http = login(site.url, "iris", "iris-pw-1")
    set_instructions(http, OWN)
    thread = http.post("/api/threads/", json={"title": "t"}).json()["id"]

    ws = await socket(site, http, thread)
    await ws.send(json.dumps({"command": "start", "message": "by socket"}))
    assert (await frames_until(ws, frames.is_terminal))[-1]["type"] == "complete"
    await ws.close()

    body = {"message": "by post", "thread_id": thread}
    with http.stream("POST", "/api/stream/message", json=body) as answer:
        assert answer.status_code == 200
        assert '"complete"' in [line for line in answer.iter_lines() if line][-1]

    chatkit = ck.ChatKitClient(site.url, http)
    try:
        events = await chatkit.stream(ck.add_message(thread, "by chatkit"))
        assert ck.deltas(events)
    finally:
        await chatkit.close()

    prompts = system_prompts(stub)
    assert len(prompts) >= 3
    assert all(p.endswith(OWN) for p in prompts), "each transport's reply carried them"
    http.close()


async def test_a_password_change_closes_another_sessions_socket_within_two_seconds(site, stub):
    here = login(site.url, "paul", "paul-pw-1")
    elsewhere = login(site.url, "paul", "paul-pw-1")
    thread = here.post("/api/threads/", json={"title": "t"}).json()["id"]
    other = await socket(site, elsewhere, thread)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', here.get("/settings/").text)
    changed_at = time.monotonic()
    changed = here.post(
        "/accounts/password_change/",
        data={
            "old_password": "paul-pw-1",
            "new_password1": "a brand new passphrase 7",
            "new_password2": "a brand new passphrase 7",
            "csrfmiddlewaretoken": token[1],
        },
    )
    assert changed.status_code == 302 and changed.headers["location"] == "/settings/"
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(other.recv(), 2)
    assert closed.value.rcvd.code == 4401
    assert time.monotonic() - changed_at < 2
    assert here.get("/settings/").status_code == 200, "the changing session stays"
    assert elsewhere.get("/settings/").status_code == 302, "the other one is logged out"
    here.close()
    elsewhere.close()
