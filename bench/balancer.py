"""`make cluster`'s round-robin balancer as a process of its own, for bench/scale.py.

    .venv/bin/python -m bench.balancer --backends 8001,8002

It is ``scripts.processes.TcpProxy`` unchanged, plus one line per accepted connection,
``CONN <client port> <backend port>``, so the benchmark knows which process each of its
sockets reached (a reply's second watcher must be on the *other* process). It prints
``BALANCER_URL=http://127.0.0.1:PORT`` once it listens and runs until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio

from scripts.processes import TcpProxy


class TellingProxy(TcpProxy):
    """A TcpProxy that prints where each connection goes."""

    async def _handle(self, client_reader, client_writer) -> None:
        # TcpProxy picks the backend from _turn before its first await: the same one as here.
        backend = self.backends[self._turn % len(self.backends)]
        client_port = client_writer.get_extra_info("peername")[1]
        print(f"CONN {client_port} {backend}", flush=True)
        await super()._handle(client_reader, client_writer)


async def _serve(proxy: TcpProxy) -> None:
    task = asyncio.create_task(proxy.serve())
    while not proxy.listening.is_set():
        if task.done():
            await task  # it failed to listen: raise why
        await asyncio.sleep(0.01)
    print(f"BALANCER_URL={proxy.url}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    """Balance connections over the backends until terminated."""
    parser = argparse.ArgumentParser(prog="python -m bench.balancer", description=__doc__)
    parser.add_argument("--backends", required=True, help="comma-separated ports")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    backends = [int(port) for port in args.backends.split(",")]
    asyncio.run(_serve(TellingProxy(backends, port=args.port)))


if __name__ == "__main__":
    main()
