"""Real daphne processes for end-to-end tests: the same helpers `make cluster` uses."""

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator

from scripts.processes import (  # noqa: F401
    Daphne,
    TcpProxy,
    cookie_header,
    free_port,
    login,
    manage,
    new_database,
    prepare,
    server_env,
)


def stub_env(stub_url: str, var_dir, **overrides: str) -> dict[str, str]:
    """A server environment with the stub as its model provider and its own var/ folder."""
    return server_env(
        AGENT_PROVIDER="compatible",
        AGENT_MODEL="stub-model",
        OPENAI_BASE_URL=stub_url,
        OPENAI_API_KEY="test-key",
        CHAT_VAR_DIR=str(var_dir),
        **overrides,
    )


@contextlib.contextmanager
def stub_site(stub_url: str, var_dir, users: dict[str, str], **overrides: str) -> Iterator[Daphne]:
    """One daphne process on laptop defaults (SQLite, in-process layer), the stub as its model,
    with these users (name -> password); stopped after. Most modules take conftest's `site`."""
    env = stub_env(stub_url, var_dir, **overrides)
    prepare(env, users)
    server = Daphne(env).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def shared_sites(
    stub_url: str, var_dir, users: dict[str, str], count: int = 2, **overrides: str
) -> Iterator[tuple[Daphne, ...]]:
    """`count` daphne processes on one fresh PostgreSQL database and the test Redis, as a
    deployment runs them (one SECRET_KEY), the stub as their model; stopped and dropped after.

    The test Redis is emptied first: user ids start again with each fresh database, and
    Redis keys (open sockets, replies in flight) name users by id.
    """
    import redis

    from tests.conftest import POSTGRES_TEST_URL, REDIS_TEST_URL, require, tcp_open

    require("PostgreSQL", tcp_open(POSTGRES_TEST_URL, 5432))
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    with redis.Redis.from_url(REDIS_TEST_URL) as emptied:
        emptied.flushdb()
    database_url, drop = new_database(POSTGRES_TEST_URL)
    env = stub_env(
        stub_url,
        var_dir,
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_TEST_URL,
        SECRET_KEY="test-secret-key-shared-by-every-process-of-the-site",
        **overrides,
    )
    prepare(env, users)
    servers: list[Daphne] = []
    try:
        for _ in range(count):
            servers.append(Daphne(env).start())
        yield tuple(servers)
    finally:
        for server in servers:
            server.stop()
        drop()


async def frames_until(ws, done: Callable[[dict], bool], timeout: float = 15) -> list[dict]:
    """A real server's WebSocket frames, up to and including the first one `done` with."""
    got = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        got.append(frame)
        if done(frame):
            return got
