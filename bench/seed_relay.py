"""The seed's relay: its "Basic FastAPI Streaming Endpoint", as the benchmark's yardstick.

    .venv/bin/python -m bench.seed_relay --port 0 --base-url http://127.0.0.1:PORT/v1

The streaming quick reference this product started from (its "seed") writes a FastAPI
endpoint that runs an Agents SDK agent and relays each text delta as one SSE event. This
module is that endpoint, kept in the seed's shape, with the parts the seed leaves out filled
in as plainly as possible: the ``app``, and an ``agent`` whose model is an
``OpenAIChatCompletionsModel`` pointed at ``--base-url`` (the stub provider speaks Chat
Completions). It serves with uvicorn, one worker, tracing off, and prints
``RELAY_URL=http://127.0.0.1:PORT`` once it listens. Development only:
fastapi and uvicorn are in requirements-dev.txt.

``--tools chat.tools.calculate,...`` gives the agent function tools by dotted path (the
product's own, as they are, without the product's wrapping): bench.scale's ``seed-tools``
scenario, the Agents SDK alone doing the tool calls the product's ``tools`` scenario does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import socket
from typing import Any

import openai
import uvicorn
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai.types.responses import ResponseTextDeltaEvent

from scripts.stub_provider import STUB_MODEL

INSTRUCTIONS = "You are a helpful assistant."


def _tool(path: str) -> Any:
    """The function tool at dotted ``path`` (``module.name``)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def make_app(base_url: str, model: str = STUB_MODEL, tools: list[str] | None = None) -> FastAPI:
    """The seed's app: one agent on the provider at ``base_url`` (with the function tools at
    the dotted paths ``tools``, if any), one streaming endpoint."""
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x")
    agent = Agent(
        name="Assistant",
        instructions=INSTRUCTIONS,
        model=OpenAIChatCompletionsModel(model=model, openai_client=client),
        tools=[_tool(path) for path in tools or []],
    )
    app = FastAPI()

    # From here to the end of the function: the seed's endpoint, unchanged but for one getattr.
    @app.post("/api/stream/message")
    async def stream_message(request: dict):
        user_input = request.get("message")

        async def event_generator():
            result = Runner.run_streamed(agent, user_input)
            async for event in result.stream_events():
                # The seed reads `event.data`, which only raw response events have: its first
                # event (AgentUpdatedStreamEvent) raises AttributeError and ends the stream
                # before any token. getattr is the smallest change that lets it run.
                if isinstance(getattr(event, "data", None), ResponseTextDeltaEvent):
                    yield f"data: {json.dumps({'token': event.data.delta})}\n\n"

        return StreamingResponse(event_generator(), media_type="text/event-stream")

    return app


async def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn (one worker, no access log) until SIGTERM or SIGINT."""
    # Bound here so a port of 0 is known before uvicorn starts: it serves on this socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=2048)
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM and SIGINT inside serve(): they make it shut down gracefully.
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # it failed to start: raise why
            return
        await asyncio.sleep(0.05)
    print(f"RELAY_URL=http://{host}:{sock.getsockname()[1]}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed_relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--base-url", required=True, help="the provider, e.g. the stub's /v1 URL")
    parser.add_argument("--model", default=STUB_MODEL)
    parser.add_argument(
        "--tools", default="", help="function tools by dotted path, comma-separated"
    )
    args = parser.parse_args(argv)
    tools = [path.strip() for path in args.tools.split(",") if path.strip()]
    # uvicorn re-raises the signal that stopped it once it has shut down: SIGTERM then ends
    # the process as it would have anyway, SIGINT arrives here.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(make_app(args.base_url, args.model, tools), args.host, args.port))


if __name__ == "__main__":
    main()
