"""`make cluster`: a multi-process deployment on loopback, to try and to test against.

Two daphne processes on PostgreSQL and Redis behind a small round-robin TCP balancer at
http://127.0.0.1:8000, as nginx would spread connections over them. Ctrl-C stops it all.
"""

import argparse
import asyncio
import os
import signal
import sys

from scripts.processes import ROOT, Daphne, TcpProxy, manage, server_env

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/chat_cluster"
DEFAULT_REDIS = "redis://127.0.0.1:6379/1"


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in the URL if it does not exist."""
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    """Start the deployment and keep it running until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the balancer's port")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE)
    env = server_env(
        DATABASE_URL=database_url,
        REDIS_URL=os.environ.get("REDIS_URL", DEFAULT_REDIS),
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "info"),
        # One var/ for all: the processes share its secret key, so sessions work on each.
        CHAT_VAR_DIR=os.environ.get("CHAT_VAR_DIR", str(ROOT / "var")),
        **{k: os.environ[k] for k in ("AGENT_PROVIDER", "AGENT_MODEL") if k in os.environ},
    )
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        if key in os.environ:
            env[key] = os.environ[key]
    ensure_database(database_url)
    manage(env, "migrate", "--noinput", "-v", "0")
    print(manage(env, "ensure_demo_user").strip().replace("8000", str(args.port)))
    manage(env, "sweep_replies")
    servers = [Daphne(env).start() for _ in range(args.processes)]
    ports = [server.port for server in servers]
    print(f"daphne processes on ports {ports}, balanced at http://127.0.0.1:{args.port}/")
    print(f"database {database_url}, Redis {env['REDIS_URL']}; logs in {servers[0].log.parent}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        asyncio.run(TcpProxy(ports, port=args.port).serve())
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
