"""The WebSocket of a thread: decode, authorize, hand over to the generation service.

No ORM and no streaming loop here: a reply runs as its own task (chat.generation), and this
consumer only subscribes to the thread's frames, filtering out any it already delivered.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import auth, broadcast, frames, generation, inputs, limits, outage, selectors
from chat.subscription import FrameFilter, ready_frame

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429


class ThreadConsumer(AsyncWebsocketConsumer):
    """`/ws/threads/<id>/`: commands start, stop, heartbeat, resync (DESIGN.md), and
    regenerate and edit (README's protocol section)."""

    # Frames come from this process's hub (broadcast.py), not through the channel layer: no
    # channel, no receive task and no layer round trip per socket.
    channel_layer_alias = None
    thread_id = ""
    # Frames that arrive while a `ready` is being made wait here, then pass the filter that
    # its snapshot set: a client never gets a frame ahead of its `ready`.
    held: list[tuple[dict[str, Any], str]] | None = None
    watcher: asyncio.Task | None = None
    counted = False  # this socket counts against MAX_SOCKETS_PER_USER

    async def connect(self) -> None:
        # Accept first: a close before accepting reaches the browser as a bare handshake
        # failure, without the code that tells it why.
        offered = self.scope.get("subprotocols", [])
        await self.accept(subprotocol=auth.SUBPROTOCOL if auth.SUBPROTOCOL in offered else None)
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        thread = await outage.db(
            "opening a thread socket",
            selectors.thread_get_for_user,
            user=user,
            thread_id=self.scope["url_route"]["kwargs"]["thread_id"],
        )
        if thread is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user_id = user.pk
        self.socket_id = uuid.uuid4().hex
        if not await limits.socket_open(user_id=self.user_id, socket_id=self.socket_id):
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.counted = True
        self.commands = limits.CommandBudget()
        self.credential = auth.credential_of_scope(self.scope)
        self.filter = FrameFilter()
        self.held = []
        # Join before reading the snapshot, so no frame falls between the two.
        await broadcast.hub().subscribe(str(thread.id), self)
        self.thread_id = str(thread.id)
        await generation.thread_sweep(thread_id=self.thread_id)
        await self._send_ready()
        self.watcher = asyncio.create_task(self._watch_credential())

    async def disconnect(self, code: int) -> None:
        # Leaving never stops a reply: it runs to its end and is saved.
        if self.thread_id:
            broadcast.hub().unsubscribe(self.thread_id, self)
        if self.watcher is not None:
            self.watcher.cancel()
        if self.counted:
            await limits.socket_closed(user_id=self.user_id, socket_id=self.socket_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler; this consumer
        # makes no database call on its own thread (the engine's run off the loop), so that
        # thread hop per frame received is skipped.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.thread_id:
            return
        if not self.commands.take():
            if self.commands.tell():
                await self._send(
                    frames.error(
                        code="rate_limited",
                        message=f"At most {settings.COMMANDS_PER_SECOND:g} commands a second "
                        "on one socket; commands past it are dropped.",
                        recoverable=True,
                    )
                )
            return
        command, problem = _decode(text_data)
        if problem is not None:
            await self._send(problem)
            return
        name = command.get("command")
        if name in ("start", "regenerate", "edit") and not await self.credential.holds():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            if name == "start":
                await self._started(
                    generation.reply_start(
                        user_id=self.user_id,
                        thread_id=self.thread_id,
                        text=command.get("message"),
                        client_id=command.get("client_id"),
                    )
                )
            elif name == "regenerate":
                await self._started(
                    generation.reply_regenerate(
                        user_id=self.user_id,
                        thread_id=self.thread_id,
                        client_id=command.get("client_id"),
                    )
                )
            elif name == "edit":
                await self._started(
                    generation.reply_edit(
                        user_id=self.user_id,
                        thread_id=self.thread_id,
                        message_id=command.get("message_id"),
                        text=command.get("message"),
                        client_id=command.get("client_id"),
                    )
                )
            elif name == "stop":
                if not await generation.reply_stop(thread_id=self.thread_id):
                    await self._send_ready()  # nothing running: let the client catch up
            elif name == "heartbeat":
                await self._send(await self._heartbeat())
            elif name == "resync":
                await self._send_ready()
            else:
                await self._bad_request(f"Unknown command {name!r}.")
        except generation.GenerationError as exc:
            await self._send(exc.frame())
        except Exception:
            logger.exception("command %r failed on thread %s", name, self.thread_id)
            await self._send(
                frames.error(code="internal", message="The server failed.", recoverable=True)
            )

    async def _watch_credential(self) -> None:
        while await asyncio.sleep(settings.SESSION_CHECK_SECONDS, True):
            if not await self.credential.holds():
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
            await limits.socket_open(user_id=self.user_id, socket_id=self.socket_id)  # renew

    async def _heartbeat(self) -> dict[str, Any]:
        # Also a chance to notice that the process running this thread's reply died.
        try:
            active = await generation.thread_snapshot(thread_id=self.thread_id)
        except Exception as exc:
            if not outage.is_transient(exc):
                raise
            return frames.heartbeat(known=False)
        return frames.heartbeat(active=active)

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """A frame published to the thread (broadcast.Subscriber)."""
        if self.held is not None:
            self.held.append((frame, text))
        elif self.filter.admit(frame):
            try:
                await self.send(text_data=text)
            except Disconnected:
                # Dropped by the server (a frame that was not UTF-8, say) before its
                # disconnect reached this consumer: it has left.
                broadcast.hub().unsubscribe(self.thread_id, self)

    async def _started(self, beginning: Awaitable[generation.StartResult]) -> None:
        result = await beginning
        if result.duplicate:
            # A retried send: tell this client where things stand instead of starting again.
            await self._send_ready()

    async def _send_ready(self) -> None:
        # Through an outage: a client that asked for `resync` ignores every frame until its
        # `ready` comes, so an error in its place would leave it frozen.
        if self.held is None:
            self.held = []
        try:
            ready = await outage.retrying(
                f"ready frame of thread {self.thread_id}",
                lambda: ready_frame(self.thread_id, self.filter),
            )
            await self._send(ready)
        finally:
            held, self.held = self.held, None
            for frame, text in held:
                await self.deliver(frame, text)

    async def _bad_request(self, text: str) -> None:
        await self._send(frames.error(code="bad_request", message=text, recoverable=False))

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame))


def _decode(
    text_data: str | None,
) -> tuple[dict[str, Any], None] | tuple[None, dict[str, Any]]:
    """The command object, or the `error` frame that answers a bad frame."""
    if text_data is None:
        problem = "Frames must be JSON text."
    elif len(text_data) > settings.MAX_MESSAGE_CHARS * 6 + 1024:
        # Far past any valid `start`, even with every character escaped: refuse unparsed.
        return None, frames.error(
            code="too_large", message="The frame is too large.", recoverable=False
        )
    else:
        try:
            command = inputs.loads(text_data)
        except ValueError as exc:
            problem = f"Frames must be JSON: {exc}"
        else:
            if isinstance(command, dict):
                return command, None
            problem = "A frame must be a JSON object with a `command`."
    return None, frames.error(code="bad_request", message=problem, recoverable=False)


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any WebSocket path but a thread's: accepted, then closed with 4404 (a refusal before
    accepting reaches the browser as a bare handshake failure)."""

    channel_layer_alias = None

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
