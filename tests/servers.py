"""Real daphne processes for end-to-end tests: the same helpers `make cluster` uses."""

import asyncio
import atexit
import concurrent.futures
import contextlib
import datetime
import json
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from scripts import processes
from scripts.processes import (  # noqa: F401
    Daphne,
    TcpProxy,
    cookie_header,
    free_port,
    login,
    manage,
    server_env,
)


class _Templates:
    """Migrated databases made once per run, which each site's database is copied from.

    `manage.py migrate` is a Django start plus every migration, several seconds of CPU, and a
    run starts two dozen sites: a copy (a file for SQLite, CREATE DATABASE ... TEMPLATE for
    PostgreSQL) takes milliseconds. The templates are dropped when the run ends.
    """

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.sqlite: Path | None = None
        self.postgres: dict[str, tuple[str, Callable[[], None]]] = {}

    def _workdir(self) -> Path:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="chat-templates-"))
            atexit.register(self.close)
        return self.dir

    def sqlite_file(self) -> Path:
        """The migrated SQLite file, made on first use (WAL checkpointed: one file to copy)."""
        if self.sqlite is None:
            var = self._workdir() / "sqlite"
            processes.manage(server_env(CHAT_VAR_DIR=str(var)), "migrate", "--noinput", "-v", "0")
            with contextlib.closing(sqlite3.connect(var / "db.sqlite3")) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.sqlite = var / "db.sqlite3"
        return self.sqlite

    def postgres_name(self, postgres_url: str) -> str:
        """The migrated template database on that server, made on first use."""
        if postgres_url not in self.postgres:
            url, drop = processes.new_database(postgres_url)
            self._workdir()
            env = server_env(CHAT_VAR_DIR=str(self._workdir() / "pg"), DATABASE_URL=url)
            try:
                processes.manage(env, "migrate", "--noinput", "-v", "0")
            except BaseException:
                drop()
                raise
            self.postgres[postgres_url] = (url.rsplit("/", 1)[1], drop)
        return self.postgres[postgres_url][0]

    def close(self) -> None:
        """Drop the template databases and delete the files; never raises."""
        for _, drop in self.postgres.values():
            with contextlib.suppress(Exception):
                drop()
        self.postgres.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir, self.sqlite = None, None


TEMPLATES = _Templates()


def new_database(postgres_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh, migrated PostgreSQL database (a copy of this run's template): its URL and a
    function that drops it."""
    import psycopg

    template = TEMPLATES.postgres_name(postgres_url)
    name = f"chat_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def drop() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return postgres_url.rsplit("/", 1)[0] + "/" + name, drop


def prepare(env: dict[str, str], users: dict[str, str]) -> None:
    """A migrated database for a server with that environment, and the users (name ->
    password) in it. SQLite: a copy of this run's template, unless the file is there already
    (then `manage.py migrate`); PostgreSQL: `new_database` made it migrated.

    The users are rows written here with Django's own password hash, as `create_user` writes
    them: a `manage.py shell` for them would be one more Django start per site.
    """
    database_url = env.get("DATABASE_URL", "")
    if not database_url:
        target = Path(env["CHAT_VAR_DIR"]) / "db.sqlite3"
        if target.exists():
            processes.manage(env, "migrate", "--noinput", "-v", "0")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(TEMPLATES.sqlite_file(), target)
            target.chmod(0o600)
    if users:
        _add_users(database_url, env.get("CHAT_VAR_DIR", ""), users)


def _add_users(database_url: str, var_dir: str, users: dict[str, str]) -> None:
    """Insert active, non-staff users with these passwords, as `User.objects.create_user`
    in the server would: PBKDF2, the server's hasher (this process's is a fast one)."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    hasher = PBKDF2PasswordHasher()
    now = datetime.datetime.now(datetime.UTC)
    rows = [(hasher.encode(password, hasher.salt()), name) for name, password in users.items()]
    columns = (
        "INSERT INTO auth_user (password, username, is_superuser, is_staff, is_active,"
        " first_name, last_name, email, date_joined)"
    )
    if database_url:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            for password, name in rows:
                conn.execute(
                    columns + " VALUES (%s, %s, false, false, true, '', '', '', %s)",
                    (password, name, now),
                )
    else:
        # Django keeps SQLite datetimes as naive UTC text.
        joined = now.replace(tzinfo=None).isoformat(" ")
        with contextlib.closing(sqlite3.connect(Path(var_dir) / "db.sqlite3")) as conn, conn:
            conn.executemany(
                columns + " VALUES (?, ?, 0, 0, 1, '', '', '', ?)",
                [(password, name, joined) for password, name in rows],
            )


def stub_env(stub_url: str, var_dir, **overrides: str) -> dict[str, str]:
    """A server environment with the stub as its model provider and its own var/ folder.

    A short drain unless a test asks for another: a reply still streaming when its module
    ends would otherwise hold the teardown's SIGTERM for the default 20 s.
    """
    return server_env(
        AGENT_PROVIDER="compatible",
        AGENT_MODEL="stub-model",
        OPENAI_BASE_URL=stub_url,
        OPENAI_API_KEY="test-key",
        CHAT_VAR_DIR=str(var_dir),
        **{"DRAIN_SECONDS": "2", **overrides},
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
    servers = [Daphne(env) for _ in range(count)]
    try:
        start_all(servers)
        yield tuple(servers)
    finally:
        stop_all(servers)
        drop()


def start_all(servers: list[Daphne]) -> None:
    """Start the processes side by side: each start is mostly imports, on its own core."""
    with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
        for started in [pool.submit(server.start) for server in servers]:
            started.result()


def stop_all(servers: list[Daphne]) -> None:
    """SIGTERM every process first, then wait for each: their drains overlap."""
    running = [s for s in servers if s.process is not None and s.process.poll() is None]
    for server in running:
        server.process.terminate()
    for server in running:
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


async def frames_until(ws, done: Callable[[dict], bool], timeout: float = 15) -> list[dict]:
    """A real server's WebSocket frames, up to and including the first one `done` with."""
    got = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        got.append(frame)
        if done(frame):
            return got
