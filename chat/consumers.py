"""The WebSocket of a thread: decode, authorize, hand over to the generation service; and the
user's socket, which carries only their thread list.

No ORM and no streaming loop here: a reply runs as its own task (chat.engine.generation), and
the thread's frames reach this socket through its `Subscriber`, which this consumer only
encodes.
"""

import json
import logging
from typing import Any

from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import auth, errors, frames, inputs, limits, outage, selectors
from chat.engine import generation
from chat.engine.subscription import Subscriber, ThreadList
from chat.errors import ChatError
from chat.frames import CLOSE_NOT_FOUND, CLOSE_TOO_MANY, CLOSE_UNAUTHENTICATED
from chat.standing import Standing

logger = logging.getLogger(__name__)


class ThreadConsumer(AsyncWebsocketConsumer):
    """`/ws/threads/<id>/`: commands start, stop, heartbeat, resync, regenerate, edit and
    continue
    (docs/protocol.md)."""

    # Frames come from this process's hub (broadcast.py), not through the channel layer: no
    # channel, no receive task and no layer round trip per socket.
    channel_layer_alias = None
    thread_id = ""
    subscriber: Subscriber | None = None  # the thread's frames, and the user's thread list
    standing: Standing | None = None  # counted among the user's sockets, credential watched

    async def connect(self) -> None:
        user = await _accept(self)
        if user is None:
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
        self.credential = auth.credential_of_scope(self.scope)
        self.standing = Standing(self.credential, self._credential_lost, transport="websocket")
        if not await self.standing.open():
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.commands = limits.CommandBudget()
        self.subscriber = Subscriber(thread.id, user_id=user.pk, push=self._push)
        await self.subscriber.open()  # before the snapshot, so no frame falls in between
        self.thread_id = str(thread.id)
        await self.subscriber.ready()

    async def disconnect(self, code: int) -> None:
        # Leaving never stops a reply: it runs to its end and is saved.
        if self.subscriber is not None:
            self.subscriber.close()
        if self.standing is not None:
            await self.standing.close()

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
        try:
            if not self.commands.take():
                if self.commands.tell():  # once a second: a flood is not echoed back
                    raise ChatError(
                        "rate_limited",
                        f"At most {settings.COMMANDS_PER_SECOND:g} commands a second on one "
                        "socket; commands past it are dropped.",
                    )
                return
            await self._command(_decode(text_data))
        except ChatError as exc:
            await self._send(exc.frame())
        except Exception:
            await self._send(errors.unexpected(f"a command on thread {self.thread_id}").frame())

    async def _command(self, command: dict[str, Any]) -> None:
        name = command.get("command")
        if name is None and command.get("type") == "heartbeat":
            name = "heartbeat"  # the seed's client sends {"type": "heartbeat"}
        if name in generation.ASKING_COMMANDS:
            # The credential is checked before any reply starts: in the begin's first trip
            # to the database (with the model's choice), or here for a command refused
            # before that trip, so an ended session is told 4401 first either way.
            try:
                ask = generation.ask_for(command)
                time_zone = generation.time_zone_of(command.get("time_zone"))
            except ChatError:
                if not await self.credential.holds():
                    await self.close(code=CLOSE_UNAUTHENTICATED)
                    return
                raise
            try:
                started = await generation.reply_begin(
                    user_id=self.user_id,
                    thread_id=self.thread_id,
                    ask=ask,
                    time_zone=time_zone,
                    credential=self.credential,
                )
            except auth.CredentialLost:
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
            if started.duplicate:
                # A retried send: tell this client where things stand instead of starting
                # again.
                await self.subscriber.ready()
        elif name == "stop":
            if not await generation.reply_stop(thread_id=self.thread_id):
                await self.subscriber.ready()  # nothing running: let the client catch up
        elif name == "heartbeat":
            await self._send(await self._heartbeat())
        elif name == "resync":
            await self.subscriber.ready()
        else:
            raise ChatError("bad_request", f"Unknown command {name!r}.")

    async def _credential_lost(self) -> None:
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _heartbeat(self) -> dict[str, Any]:
        # Also where a reply whose process died is ended: its clients are told (`error`).
        try:
            active = await generation.thread_heartbeat(thread_id=self.thread_id)
        except Exception as exc:
            if not outage.is_transient(exc):
                raise
            return frames.heartbeat(known=False)
        return frames.heartbeat(active=active)

    async def _push(self, frame: dict[str, Any], text: str) -> None:
        """A frame for this client, from its subscriber."""
        try:
            await self.send(text_data=text)
        except Disconnected:
            # Dropped by the server (a frame that was not UTF-8, say) before its disconnect
            # reached this consumer: it has left.
            self.subscriber.close()

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame))


async def _accept(consumer: AsyncWebsocketConsumer) -> Any:
    """Accept the socket and return its user; closed with 4401 (and None) when no one is
    logged in. Accepted first: a close before accepting reaches the browser as a bare
    handshake failure, without the code that tells it why."""
    offered = consumer.scope.get("subprotocols", [])
    await consumer.accept(subprotocol=auth.SUBPROTOCOL if auth.SUBPROTOCOL in offered else None)
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        await consumer.close(code=CLOSE_UNAUTHENTICATED)
        return None
    return user


class UserConsumer(AsyncWebsocketConsumer):
    """`/ws/user/`: the user's thread list as it changes (`thread`, `thread_deleted`), for a
    page with no thread open. First frame `ready` (no thread); commands `heartbeat` and
    `resync` (docs/protocol.md, "The user's socket")."""

    channel_layer_alias = None  # frames come from this process's hub, as for a thread
    threads: ThreadList | None = None
    standing: Standing | None = None

    async def connect(self) -> None:
        user = await _accept(self)
        if user is None:
            return
        self.standing = Standing(
            auth.credential_of_scope(self.scope), self._credential_lost, transport="websocket"
        )
        if not await self.standing.open():
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.commands = limits.CommandBudget()
        self.threads = ThreadList(user.pk, push=self._push)
        await self.threads.open()  # before `ready`: a client that catches up then misses nothing
        await self._send(frames.ready(thread_id=None, active=None))

    async def disconnect(self, code: int) -> None:
        if self.threads is not None:
            self.threads.close()
        if self.standing is not None:
            await self.standing.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.threads is None or not self.commands.take():
            return  # a flood is dropped: this socket has nothing to refuse it with
        try:
            command = _decode(text_data)
            name = command.get("command")
            if name == "heartbeat" or (name is None and command.get("type") == "heartbeat"):
                await self._send(frames.heartbeat(active=None))
            elif name == "resync":
                await self._send(frames.ready(thread_id=None, active=None))
            else:
                raise ChatError(
                    "bad_request", f"The user's socket takes heartbeat and resync, not {name!r}."
                )
        except ChatError as exc:
            await self._send(exc.frame())

    async def _credential_lost(self) -> None:
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _push(self, frame: dict[str, Any], text: str) -> None:
        try:
            await self.send(text_data=text)
        except Disconnected:
            self.threads.close()

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame))


def _decode(text_data: str | None) -> dict[str, Any]:
    """The command object of a frame; a bad frame raises the error that answers it."""
    if text_data is None:
        raise ChatError("bad_request", "Frames must be JSON text.")
    if len(text_data) > settings.MAX_MESSAGE_CHARS * 6 + 1024:
        # Far past any valid `start`, even with every character escaped: refuse unparsed.
        raise ChatError("too_large", "The frame is too large.")
    try:
        command = inputs.loads(text_data)
    except ValueError as exc:
        raise ChatError("bad_request", f"Frames must be JSON: {exc}") from None
    if not isinstance(command, dict):
        raise ChatError("bad_request", "A frame must be a JSON object with a `command`.")
    return command


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any WebSocket path but a thread's or the user's: accepted, then closed with 4404 (a
    refusal before accepting reaches the browser as a bare handshake failure)."""

    channel_layer_alias = None

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
