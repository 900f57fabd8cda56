"""A client that stops reading is dropped past SLOW_READER_BYTES instead of growing the process:
over real daphne, since the buffer that grows is daphne's own."""

import json
import socket

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.servers import cookie_header, login

BOUND = 256 * 1024
pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio,
    pytest.mark.site({"sam": "sam-pw"}, SLOW_READER_BYTES=str(BOUND)),
]

# 8 MiB in 64 KiB frames: far more than the kernel's socket buffers hold.
TOKENS = [chr(ord("a") + i % 26) * 65536 for i in range(128)]


def small_socket(port: int) -> socket.socket:
    """A connected TCP socket whose receive buffer holds almost nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def test_a_socket_that_stops_reading_is_closed_and_resumes_from_ready(site, stub):
    stub.script("flood me", tokens=TOKENS, delay_ms=1)
    user = login(site.url, "sam", "sam-pw")
    thread = user.post("/api/threads/", json={}).json()["id"]
    url = f"{site.ws_url}/ws/threads/{thread}/"
    headers = {"Cookie": cookie_header(user)}
    slow = await ws_connect(
        url,
        sock=small_socket(site.port),
        origin=site.url,
        additional_headers=headers,
        max_queue=1,  # the client library stops reading from the socket at once
        max_size=None,
    )
    assert json.loads(await slow.recv())["type"] == "ready"
    async with ws_connect(url, origin=site.url, additional_headers=headers, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"command": "start", "message": "flood me"}))
        text = ""
        while (frame := json.loads(await ws.recv()))["type"] != "complete":
            text += frame.get("token", "")
    assert text == "".join(TOKENS), "a reader that keeps up gets every byte"

    seen = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            seen.append(json.loads(await slow.recv())["type"])
    assert "complete" not in seen, "the slow socket was dropped, not fed the whole reply"
    # 1013 when the client reads its way to the close frame; a peer that does not answer the
    # close at all is cut by the WebSocket's close timeout (1006 on this side).
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1013
    # Reconnecting, it resumes from `ready`: the reply was saved whole.
    async with ws_connect(url, origin=site.url, additional_headers=headers) as again:
        assert json.loads(await again.recv())["active"] is None
    saved = user.get(f"/api/threads/{thread}/messages/").json()["results"]
    assert saved[-1]["content"] == text and saved[-1]["status"] == "complete"


async def test_an_event_stream_that_stops_reading_is_ended(site, stub):
    stub.script("flood the stream", tokens=TOKENS, delay_ms=1)
    user = login(site.url, "sam", "sam-pw")
    thread = user.post("/api/threads/", json={}).json()["id"]
    sock = small_socket(site.port)
    sock.sendall(
        f"GET /api/threads/{thread}/events/ HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\n"
        f"Cookie: {cookie_header(user)}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    sock.settimeout(10)
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    url = f"{site.ws_url}/ws/threads/{thread}/"
    async with ws_connect(
        url, origin=site.url, additional_headers={"Cookie": cookie_header(user)}, max_size=None
    ) as ws:
        await ws.recv()
        await ws.send(json.dumps({"command": "start", "message": "flood the stream"}))
        while json.loads(await ws.recv())["type"] != "complete":
            pass
    body = b""
    try:
        while chunk := sock.recv(1 << 20):  # EOF or reset: the stream was ended
            body += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert b'"type": "complete"' not in body
    assert len(body) < len("".join(TOKENS)) // 2
