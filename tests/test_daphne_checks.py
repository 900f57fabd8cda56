"""daphne's check of its connections (timeouts, pings) runs a slice at a time
(chat/daphne_checks.py): each connection still checked once a round, no turn checking more
than its share, and a real daphne serving the product still pings an idle socket."""

import base64
import math
import os
import socket
import subprocess
import sys
import time

import pytest

from chat.daphne_checks import SLICES, Slices
from scripts.processes import ROOT
from tests.servers import Daphne, cookie_header, login, prepare, stub_env


class Connection:
    """What daphne's checker needs of a connection: `check_timeouts`, here counted."""

    def __init__(self) -> None:
        self.checks = 0

    def check_timeouts(self) -> None:
        self.checks += 1


def test_each_connection_is_checked_once_a_round_and_no_turn_checks_more_than_its_share():
    connections = {Connection(): {} for _ in range(5000)}
    slices = Slices(connections)
    per_turn = [slices.turn() for _ in range(SLICES)]
    assert max(per_turn) == math.ceil(5000 / SLICES)  # 250 a turn, not 5,000 at once
    assert all(c.checks == 1 for c in connections)
    [slices.turn() for _ in range(SLICES)]
    assert all(c.checks == 2 for c in connections)


def test_a_connection_opened_mid_round_joins_the_next_and_one_closed_is_passed_over():
    connections = {Connection(): {} for _ in range(40)}
    slices = Slices(connections)
    slices.turn()
    closed = next(c for c in connections if c.checks == 0)
    del connections[closed]
    opened = Connection()
    connections[opened] = {}
    while any(c.checks == 0 for c in connections if c is not opened):
        slices.turn()
    assert closed.checks == 0 and opened.checks == 0
    for _ in range(SLICES):
        slices.turn()
    assert opened.checks == 1


def test_the_product_spreads_the_checks_of_the_daphne_that_serves_it():
    # As daphne starts: its server module first, then the application.
    code = (
        "import daphne.server as s, chatproject.asgi, chat.daphne_checks as d; "
        "print(s.Server.timeout_checker is d._timeout_checker)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["True"], out.stderr[-2000:]


def _frames(sock: socket.socket, buffer: bytes) -> tuple[list[int], bytes]:
    """The opcodes of the whole (unmasked, server-sent) frames in `buffer`, and the rest."""
    opcodes = []
    while len(buffer) >= 2:
        length, start = buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < start + length:
            break
        opcodes.append(buffer[0] & 0x0F)
        buffer = buffer[start + length :]
    return opcodes, buffer


@pytest.mark.slow
def test_an_idle_socket_on_real_daphne_is_still_pinged(stub_server, tmp_path):
    env = stub_env(stub_server.url, tmp_path)
    prepare(env, {"ida": "ida-pw"})
    server = Daphne(env, args=("--ping-interval", "1")).start()
    try:
        user = login(server.url, "ida", "ida-pw")
        thread = user.post("/api/threads/", json={}).json()["id"]
        host = f"127.0.0.1:{server.port}"
        key = base64.b64encode(os.urandom(16)).decode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            sock.sendall(
                (
                    f"GET /ws/threads/{thread}/ HTTP/1.1\r\nHost: {host}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: {server.url}\r\nCookie: {cookie_header(user)}\r\n\r\n"
                ).encode()
            )
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, buffer = received.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
            seen: list[int] = []
            deadline = time.monotonic() + 15
            while 0x9 not in seen and time.monotonic() < deadline:
                opcodes, buffer = _frames(sock, buffer + sock.recv(65536))
                seen += opcodes
        assert seen[0] == 0x1  # `ready`
        assert 0x9 in seen  # then daphne's ping, from its spread checks
    finally:
        server.stop()
