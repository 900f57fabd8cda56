"""The processes and services a benchmark runs against, and what they cost (from /proc).

Everything listens on loopback and everything started here is stopped by the context
managers, also when the benchmark fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from chat.stub_provider import STUB_MODEL
from tests.servers import Daphne, new_database, prepare, server_env

ROOT = Path(__file__).resolve().parent.parent
BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, all its threads included."""
    # Fields 14 and 15 of /proc/<pid>/stat; split after the ")" so a command name with
    # spaces cannot shift them.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def memory_mb(pid: int, field: str) -> float:
    """A /proc/<pid>/status memory figure (VmRSS, VmHWM, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def redis_cpu_seconds(url: str) -> float:
    """CPU seconds the Redis server has used (INFO cpu): it works for the product too."""
    with redis.Redis.from_url(url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_flush(url: str) -> None:
    """Empty the benchmark's Redis database (channel layer and live reply state)."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()


class StubProcess:
    """The stub provider in its own process, so it never shares a GIL with the clients."""

    def __init__(self, *, tokens: int, delay_ms: float) -> None:
        self.command = [
            sys.executable,
            "-m",
            "chat.stub_provider",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--delay-ms",
            str(delay_ms),
            "--reply-tokens",
            str(tokens),
            "--timestamp-tokens",
        ]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.model = STUB_MODEL

    def __enter__(self) -> StubProcess:
        """Start it and wait (bounded) for the ``STUB_URL=...`` line."""
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            readable, _, _ = select.select([self.process.stdout], [], [], 20)
            line = self.process.stdout.readline().strip() if readable else ""
            if not line.startswith("STUB_URL="):
                raise RuntimeError(f"the stub provider did not start (said {line!r})")
            self.url = line.removeprefix("STUB_URL=")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop it."""
        self.stop()

    @property
    def pid(self) -> int:
        """The process id, for its CPU figures."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM (it closes its streams and exits), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class ProductStack:
    """One product configuration: its database (and Redis), and daphne started on demand.

    ``redis_url`` unset is the laptop stack (in-process channel layer, SQLite in
    ``workdir``); set, the production stack (channels-redis, a throwaway PostgreSQL
    database made from ``postgres_url`` and dropped on exit, Redis flushed on entry and exit).
    """

    def __init__(
        self,
        *,
        stub_url: str,
        workdir: Path,
        redis_url: str | None = None,
        postgres_url: str | None = None,
    ) -> None:
        self.stub_url, self.workdir = stub_url, workdir
        self.redis_url, self.postgres_url = redis_url, postgres_url
        self.env: dict[str, str] = {}
        self._cleanup = contextlib.ExitStack()

    def __enter__(self) -> ProductStack:
        """Create the database, migrate it and add the benchmark user."""
        try:
            overrides = {
                "AGENT_PROVIDER": "compatible",
                "AGENT_MODEL": STUB_MODEL,
                "OPENAI_BASE_URL": self.stub_url,
                "OPENAI_API_KEY": "x",
                # SQLite file, secret key and daphne logs all stay in the temporary dir.
                "CHAT_VAR_DIR": str(self.workdir),
                # One user starts every reply here; the per-user limit is not under test.
                "REPLIES_PER_MINUTE": "0",
            }
            if self.redis_url:
                redis_flush(self.redis_url)
                self._cleanup.callback(redis_flush, self.redis_url)
                overrides["REDIS_URL"] = self.redis_url
            if self.postgres_url:
                database_url, drop = new_database(self.postgres_url)
                self._cleanup.callback(drop)
                overrides["DATABASE_URL"] = database_url
            self.env = server_env(**overrides)
            prepare(self.env, {BENCH_USER: BENCH_PASSWORD})
        except BaseException:
            self._cleanup.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Drop the database and flush Redis."""
        self._cleanup.close()

    @contextlib.contextmanager
    def daphne(self) -> Iterator[Daphne]:
        """A fresh daphne process (fresh so its peak RSS belongs to one run), then stopped."""
        server = Daphne(self.env)
        try:
            yield server.start()
        finally:
            server.stop()


def wait_idle(pid: int, *, seconds: float = 0.2, limit: float = 5.0) -> None:
    """Wait (bounded) until a process stops burning CPU, so a measurement starts clean."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(seconds)
        after = cpu_seconds(pid)
        if after - before < seconds * 0.05:
            return
        before = after
