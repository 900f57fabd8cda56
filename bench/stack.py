"""The processes and services a benchmark runs against, and what they cost (from /proc).

Everything listens on loopback and everything started here is stopped by the context
managers, also when the benchmark fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import platform
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from scripts.processes import NO_USER_LIMITS, Daphne, new_database, prepare, server_env
from scripts.stub_provider import STUB_MODEL

ROOT = Path(__file__).resolve().parent.parent
BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds a process has used so far, all its threads included; with
    ``children``, also its children's that it has waited for (a tool's calculator process)."""
    # Fields 14 and 15 (16 and 17: the waited-for children's) of /proc/<pid>/stat; split after
    # the ")" so a command name with spaces cannot shift them.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS


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


def postgres_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds a PostgreSQL server has used: the postmaster, its live children, and (in
    the postmaster's cutime/cstime) every child already gone, such as a connection's backend
    closed since; so a difference between two readings is what the server spent meanwhile."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{postmaster}/stat").read_text().rpartition(")")[2].split()
    total = sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS  # utime stime cutime cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone since the listing: its time is in the postmaster's cutime now
        if int(child[1]) == postmaster:
            total += (int(child[11]) + int(child[12])) / _CLOCK_TICKS
    return total


def machine_info() -> dict[str, Any]:
    """The machine, the commit and the product files changed since it, for a result file."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    # The product's files changed since the commit, if any: the figures are of those too.
    dirty = [line[3:] for line in git("status", "--porcelain", "chat", "chatproject").splitlines()]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted": dirty,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_before": os.getloadavg(),
    }


def redis_flush(url: str) -> None:
    """Empty the benchmark's Redis database (channel layer and live reply state)."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()


class LineProcess:
    """A child process that prints ``PREFIX=value`` once it is ready; stopped on exit."""

    prefix = ""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen[str] | None = None
        self.value = ""

    def __enter__(self) -> LineProcess:
        """Start it and wait (bounded) for its ``PREFIX=...`` line."""
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            readable, _, _ = select.select([self.process.stdout], [], [], 30)
            line = self.process.stdout.readline().strip() if readable else ""
            if not line.startswith(self.prefix + "="):
                raise RuntimeError(f"{self.command[2]} did not start (said {line!r})")
            self.value = line.removeprefix(self.prefix + "=")
            self.started()
        except BaseException:
            self.stop()
            raise
        return self

    def started(self) -> None:
        """Called once the process said it is ready."""

    def __exit__(self, *exc_info: object) -> None:
        """Stop it."""
        self.stop()

    @property
    def pid(self) -> int:
        """The process id, for its CPU figures."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: for a process whose figures are taken, a graceful stop is only a wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# The key the benchmark's stub answers, given to the product and to the relay alike.
STUB_API_KEY = "x"


class StubProcess(LineProcess):
    """The stub provider in its own process, so it never shares a GIL with the clients."""

    prefix = "STUB_URL"

    def __init__(self, *, tokens: int, delay_ms: float, token_chars: int = 4) -> None:
        super().__init__(
            [
                sys.executable,
                "-m",
                "scripts.stub_provider",
                "--api-key",
                STUB_API_KEY,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--delay-ms",
                str(delay_ms),
                "--reply-tokens",
                str(tokens),
                "--timestamp-tokens",
                "--token-chars",
                str(token_chars),
            ]
        )
        self.model = STUB_MODEL

    @property
    def url(self) -> str:
        """The stub's base URL, ending in ``/v1``."""
        return self.value


class RelayProcess(LineProcess):
    """The seed's relay (bench/seed_relay.py) under uvicorn, one worker, on the stub."""

    prefix = "RELAY_URL"

    def __init__(self, stub_url: str, tools: str = "") -> None:
        command = [sys.executable, "-m", "bench.seed_relay", "--port", "0", "--base-url", stub_url]
        super().__init__(command + (["--tools", tools] if tools else []))

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.value


class BalancerProcess(LineProcess):
    """`make cluster`'s round-robin balancer (bench/balancer.py) in its own process, so it
    shares no GIL with the clients; it tells which backend each connection went to."""

    prefix = "BALANCER_URL"

    def __init__(self, backends: list[int]) -> None:
        super().__init__(
            [sys.executable, "-m", "bench.balancer", "--backends", ",".join(map(str, backends))]
        )
        self._routes: dict[int, int] = {}
        self._changed = threading.Condition()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.value

    def started(self) -> None:
        """Read its ``CONN client-port backend-port`` lines from now on."""
        threading.Thread(target=self._read, name="balancer-routes", daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            kind, _, rest = line.partition(" ")
            if kind == "CONN":
                client, backend = map(int, rest.split())
                with self._changed:
                    self._routes[client] = backend
                    self._changed.notify_all()

    def backend_of(self, client_port: int, timeout: float = 5.0) -> int:
        """The backend port the connection from ``client_port`` went to (blocks, bounded)."""
        with self._changed:
            if not self._changed.wait_for(lambda: client_port in self._routes, timeout):
                raise RuntimeError(f"the balancer did not report connection {client_port}")
            return self._routes.pop(client_port)


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
                "OPENAI_API_KEY": STUB_API_KEY,
                # SQLite file, secret key and daphne logs all stay in the temporary dir.
                "CHAT_VAR_DIR": str(self.workdir),
                **NO_USER_LIMITS,  # one user starts every reply here
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
