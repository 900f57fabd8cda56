"""Processes on loopback: daphne servers, a fresh database, and a logged-in HTTP client.

Used by `make cluster` (scripts/cluster.py) and by the end-to-end tests.
"""

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Benchmarks, fault runs and the fuzzer drive many replies and sockets as one user: the
# per-user limits (README's configuration) are not what they measure.
NO_USER_LIMITS = {
    "REPLIES_PER_MINUTE": "0",
    "MAX_REPLIES_IN_FLIGHT": "0",
    "MAX_SOCKETS_PER_USER": "0",
    "COMMANDS_PER_SECOND": "0",
    "DAILY_TOKEN_BUDGET": "0",
}


def server_env(**overrides: str) -> dict[str, str]:
    """The environment of a server process: this one's, minus anything pointing elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENT_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update({"LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command in a child process with that environment."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare(env: dict[str, str], users: dict[str, str]) -> None:
    """Migrate the database and create the users (name -> password), all in one process (a
    `manage.py` per user cost a Django start each: 8 users, about 10 s)."""
    manage(env, "migrate", "--noinput", "-v", "0")
    if users:
        manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth.models import User\n"
            f"for name, password in {dict(users)!r}.items():\n"
            "    User.objects.create_user(name, password=password)",
        )


class Daphne:
    """One daphne process serving the project."""

    def __init__(
        self, env: dict[str, str], port: int | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.env = env
        self.port = port or free_port()
        self.args = args  # more of daphne's options (`--ping-interval 1`)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = Path(env.get("CHAT_VAR_DIR", "/tmp")) / f"daphne-{self.port}.log"

    def start(self) -> "Daphne":
        """Start it and wait until it answers HTTP."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *self.args,
                "chatproject.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        # Generous: a start is seconds of imports, and a loaded 2-core machine starting two
        # side by side (tests/servers.py) takes several times as long as an idle one.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: the process dies without cleaning anything up."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def login(base_url: str, username: str, password: str) -> httpx.Client:
    """An HTTP client logged in through the real login form, with CSRF set up."""
    client = httpx.Client(base_url=base_url, timeout=10)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
    )
    assert answer.status_code == 302, answer.text[:500]
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.headers["Referer"] = base_url + "/"
    return client


def cookie_header(client: httpx.Client) -> str:
    """The client's cookies as a Cookie header for a WebSocket handshake."""
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def new_database(postgres_url: str) -> tuple[str, callable]:
    """A fresh PostgreSQL database: its URL and a function that drops it."""
    import psycopg

    name = f"chat_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


class TcpProxy:
    """A round-robin TCP proxy on loopback, as nginx spreads connections over processes.

    `cut()` drops every open connection at once, as a network blip does, while new
    connections are still accepted: what a reconnecting client meets in real life.
    """

    def __init__(self, backends: list[int], port: int = 0) -> None:
        self.backends = backends
        self.port = port
        self._turn = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self.listening = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        backend = self.backends[self._turn % len(self.backends)]
        self._turn += 1
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
            )
        finally:
            self._writers -= {client_writer, server_writer}

    async def serve(self) -> None:
        """Accept connections until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.listening.set()
        async with self._server:
            await self._server.serve_forever()

    def start_in_thread(self) -> "TcpProxy":
        """Serve from a daemon thread; returns once listening."""

        def run() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(self.serve())

        threading.Thread(target=run, daemon=True, name="tcp-proxy").start()
        self.listening.wait(10)
        return self

    def cut(self) -> None:
        """Drop every open connection (thread-safe)."""

        def drop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def stop(self) -> None:
        """Stop accepting and drop everything (thread-safe)."""
        if self._loop is not None and self._server is not None:
            self.cut()
            self._loop.call_soon_threadsafe(self._server.close)
