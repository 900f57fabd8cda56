"""A reply's life, shared by every transport: start, stream, checkpoint, finish, stop.

A reply runs as its own task owned by this process's `Registry`, so it outlives the socket
that asked for it; subscribers (WebSocket consumers, SSE views) only join the thread's group
and read snapshots. Frames are recorded in the live store before they are published.
"""

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError

from chat import agent, frames, limits, live, selectors, services
from chat.broadcast import publish
from chat.models import Message
from chat.reply import ReplyStream, Run

logger = logging.getLogger(__name__)


class GenerationError(Exception):
    """A request the generation service refuses, as DESIGN.md's error code."""

    def __init__(self, code: frames.ErrorCode, message: str, *, recoverable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.recoverable = recoverable

    def frame(self) -> dict[str, Any]:
        """The `error` frame that tells the client."""
        return frames.error(code=self.code, message=self.message, recoverable=self.recoverable)


def _snapshot_frame(reply: live.LiveReply | None) -> frames.Snapshot | None:
    if reply is None:
        return None
    return {"message_id": reply.message_id, "seq": reply.seq, "content": reply.content}


# --- the per-process registry of replies this process owns ------------------------------


class Registry:
    """The replies this process owns, and its control channel for `stop` from elsewhere."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.channel = ""
        self._listener: asyncio.Task | None = None
        self._beat: asyncio.Task | None = None

    async def owner(self) -> str:
        """This process's control channel, listening from the first call on."""
        if not self.channel:
            # The default prefix matters on channels-redis: every "specific." channel of a
            # process shares one receive loop, while another prefix would contend for the
            # layer's receive lock and delay the consumers' frames by seconds.
            self.channel = await get_channel_layer().new_channel()
            self._listener = asyncio.create_task(self._listen(), name="chat-owner-listener")
            self._beat = asyncio.create_task(self._keep_alive(), name="chat-owner-beat")
        return self.channel

    async def close(self, timeout: float = 5) -> None:
        """Let this process's replies finish (up to `timeout`), then stop listening."""
        running = [run.task for run in self.runs.values() if run.task is not None]
        if running:
            await asyncio.wait(running, timeout=timeout)
        for task in (self._listener, self._beat):
            if task is not None:
                task.cancel()
        tasks = [t for t in (self._listener, self._beat) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self.channel = ""

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while True:
            try:
                event = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("owner channel receive failed")
                await asyncio.sleep(1)
                continue
            if event.get("type") == "reply.stop":
                self.stop_local(event["thread_id"])

    async def _keep_alive(self) -> None:
        while True:
            try:
                await live.store().owner_beat(owner=self.channel)
            except Exception:
                logger.exception("owner heartbeat failed")
            await asyncio.sleep(live.owner_beat_seconds())

    def stop_local(self, thread_id: str) -> bool:
        """Stop the thread's reply if this process runs it."""
        run = self.runs.get(thread_id)
        if run is None:
            return False
        run.stopped.set()
        return True


_registries: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Registry]" = (
    weakref.WeakKeyDictionary()
)


def registry() -> Registry:
    """This event loop's registry (one per daphne process)."""
    loop = asyncio.get_running_loop()
    if loop not in _registries:
        _registries[loop] = Registry()
    return _registries[loop]


# --- the service --------------------------------------------------------------------------


@dataclass(frozen=True)
class StartResult:
    """What `reply_start` did: began a reply, or found this `client_id` already sent."""

    reply_id: str
    duplicate: bool


def _validate_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise GenerationError("bad_request", "`message` must be a non-empty string.")
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise GenerationError(
            "too_large",
            f"The message is {len(text)} characters; the limit is {settings.MAX_MESSAGE_CHARS}.",
        )
    return text


def _uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise GenerationError("bad_request", f"`{name}` must be a UUID.") from None


def _client_uuid(client_id: Any) -> uuid.UUID:
    """The command's client_id, or a fresh one when the client sent none."""
    return uuid.uuid4() if client_id is None else _uuid(client_id, "client_id")


@database_sync_to_async
def _existing_send(thread_id: str, client_id: uuid.UUID) -> Message | None:
    """The reply that answered this `client_id` already (its user message's, or its own)."""
    sent = Message.objects.filter(thread_id=thread_id, client_id=client_id).first()
    if sent is None or sent.role == Message.Role.ASSISTANT:
        return sent
    return (
        Message.objects.filter(
            thread_id=thread_id, role=Message.Role.ASSISTANT, created_at__gte=sent.created_at
        )
        .order_by("created_at", "id")
        .first()
    ) or sent


async def reply_start(
    *, user_id: int, thread_id: str, text: Any, client_id: Any = None
) -> StartResult:
    """Commit the user's message and start the agent's reply as a task of this process.

    The caller has checked that the thread is the user's. Idempotent on `client_id`: a repeat
    starts nothing and reports `duplicate`. One reply at a time per thread (`busy`).
    """
    text = _validate_text(text)
    client_uuid = _client_uuid(client_id)
    return await _begin(
        user_id,
        thread_id,
        client_uuid,
        lambda **ids: services.reply_begin(text=text, client_id=client_uuid, **ids),
    )


async def reply_regenerate(*, user_id: int, thread_id: str, client_id: Any = None) -> StartResult:
    """Replace the thread's last finished reply with a new one to the same message."""
    client_uuid = _client_uuid(client_id)
    return await _begin(
        user_id,
        thread_id,
        client_uuid,
        lambda **ids: services.reply_regenerate_begin(client_id=client_uuid, **ids),
    )


async def reply_edit(
    *, user_id: int, thread_id: str, message_id: Any, text: Any, client_id: Any = None
) -> StartResult:
    """Replace the thread's last user message (and its reply) with new text, and answer it."""
    text = _validate_text(text)
    edited = _uuid(message_id, "message_id")
    client_uuid = _client_uuid(client_id)
    return await _begin(
        user_id,
        thread_id,
        client_uuid,
        lambda **ids: services.reply_edit_begin(
            message_id=edited, text=text, client_id=client_uuid, **ids
        ),
    )


async def _begin(
    user_id: int, thread_id: str, client_uuid: uuid.UUID, write: Callable[..., services.Begun]
) -> StartResult:
    """The one way a reply begins: claim the thread, commit, announce, spawn the task."""
    thread_id = str(thread_id)
    if (sent := await _existing_send(thread_id, client_uuid)) is not None:
        return StartResult(reply_id=str(sent.id), duplicate=True)
    if not await limits.reply_allowed(user_id=user_id):
        raise GenerationError(
            "rate_limited",
            f"At most {settings.REPLIES_PER_MINUTE} replies a minute; try again shortly.",
            recoverable=True,
        )
    chosen = _provider()
    reg = registry()
    owner = await reg.owner()
    reply_id = uuid.uuid4()
    store = live.store()
    # Claim the thread before the database knows the reply, so a `streaming` row always has
    # a live record while its owner lives (that is how dead owners are told apart).
    if not await store.claim(
        thread_id=thread_id, message_id=str(reply_id), owner=owner, model=chosen.model
    ):
        if (sent := await _existing_send(thread_id, client_uuid)) is not None:
            return StartResult(reply_id=str(sent.id), duplicate=True)
        raise GenerationError(
            "busy", "A reply is already being written in this thread.", recoverable=True
        )
    try:
        begun = await database_sync_to_async(write)(
            thread_id=uuid.UUID(thread_id), reply_id=reply_id, model=chosen.model
        )
    except IntegrityError:
        await store.release(thread_id=thread_id, message_id=str(reply_id))
        sent = await _existing_send(thread_id, client_uuid)
        return StartResult(reply_id=str(sent.id) if sent else "", duplicate=True)
    except services.Refused as exc:
        await store.release(thread_id=thread_id, message_id=str(reply_id))
        raise GenerationError("bad_request", str(exc)) from None
    except BaseException:
        await store.release(thread_id=thread_id, message_id=str(reply_id))
        raise
    # Published after the commit above: no subscriber sees a message a rollback removed.
    if begun.removed_ids:
        await publish(thread_id, frames.removed(message_ids=begun.removed_ids))
    if begun.user_message is not None:
        await publish(
            thread_id, frames.message(message=selectors.message_payload(begun.user_message))
        )
    run = Run(
        thread_id=thread_id,
        reply_id=begun.reply.id,
        provider=chosen,
        new_title=selectors.thread_payload(begun.thread) if begun.thread else None,
        first_message=begun.user_message.content if begun.thread else "",
    )
    reg.runs[thread_id] = run
    run.task = asyncio.create_task(_own(run), name=f"reply-{begun.reply.id}")
    return StartResult(reply_id=str(begun.reply.id), duplicate=False)


async def _own(run: Run) -> None:
    """Run the reply as this process's task; it outlives the socket that asked for it."""
    try:
        await ReplyStream(run).run_to_end()
    finally:
        reg = registry()
        if reg.runs.get(run.thread_id) is run:  # a next reply may already be registered
            del reg.runs[run.thread_id]


def _provider() -> agent.Provider:
    try:
        return agent.provider()
    except agent.ProviderError as exc:
        raise GenerationError("provider_error", str(exc)) from exc


async def reply_stop(*, thread_id: str) -> bool:
    """Stop the thread's reply, whichever process runs it. False if none is running.

    A reply whose process died is marked `interrupted` on the spot: Stop always ends it.
    """
    thread_id = str(thread_id)
    if registry().stop_local(thread_id):
        return True
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    if reply is None:
        return False
    if not await _alive(reply):
        await _interrupt(thread_id, reply)
        return True
    await get_channel_layer().send(reply.owner, {"type": "reply.stop", "thread_id": thread_id})
    return True


async def reply_force_stop(*, thread_id: str, reply_id: uuid.UUID) -> bool:
    """An operator's stop: ask the owner; a reply with no live owner is marked interrupted."""
    if await reply_stop(thread_id=thread_id):
        return True
    await _interrupt(str(thread_id), None, reply_id=reply_id)
    return False


async def thread_snapshot(*, thread_id: str) -> frames.Snapshot | None:
    """The thread's reply in flight as `ready.active`, after marking dead owners' replies."""
    thread_id = str(thread_id)
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    if reply is not None and not await _alive(reply):
        await _interrupt(thread_id, reply)
        reply = None
    return _snapshot_frame(reply)


async def _alive(reply: live.LiveReply) -> bool:
    reg = registry()
    if reply.owner == reg.channel:
        return any(str(run.reply_id) == reply.message_id for run in reg.runs.values())
    return await live.store().owner_alive(owner=reply.owner)


async def thread_sweep(*, thread_id: str) -> None:
    """Mark the thread's replies left `streaming` by a dead process as `interrupted`."""
    thread_id = str(thread_id)
    rows = await database_sync_to_async(selectors.replies_streaming)(thread_id=thread_id)
    if not rows:
        return
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    for row in rows:
        if reply is not None and reply.message_id == str(row.id) and await _alive(reply):
            continue
        await _interrupt(
            thread_id,
            reply if reply and reply.message_id == str(row.id) else None,
            reply_id=row.id,
        )


async def _interrupt(
    thread_id: str, reply: live.LiveReply | None, *, reply_id: uuid.UUID | None = None
) -> None:
    reply_id = reply_id or uuid.UUID(reply.message_id)
    count = await database_sync_to_async(services.replies_interrupt)(reply_ids=[reply_id])
    terminal = frames.error(
        code="interrupted",
        message=services.INTERRUPTED_MESSAGE,
        recoverable=True,
        message_id=str(reply_id),
        seq=(reply.seq + 1) if reply else 1,
    )
    if reply is not None:
        await live.store().finish(
            thread_id=thread_id, message_id=reply.message_id, terminal=terminal
        )
    if count:
        logger.warning("reply %s interrupted: its process died", reply_id)
        await publish(thread_id, terminal)


async def thread_replay(
    *, thread_id: str, message_id: str | None, after_seq: int
) -> list[dict[str, Any]] | None:
    """The frames of the thread's latest reply after `after_seq`, exactly as they were sent.

    None when that reply is no longer recorded (the caller starts over from `ready`). With no
    `message_id`, the latest reply is meant.
    """
    reply = await live.store().record(thread_id=str(thread_id))
    if reply is None or (message_id is not None and reply.message_id != message_id):
        return None
    if after_seq > reply.seq + (1 if reply.done else 0):
        return None
    replayed: list[dict[str, Any]] = []
    if after_seq < 0:
        replayed.append(frames.start(message_id=reply.message_id, model=reply.model))
    for seq, text in reply.frame_texts(after_seq):
        replayed.append(frames.token(message_id=reply.message_id, seq=seq, text=text))
    if reply.terminal is not None and reply.terminal["seq"] > after_seq:
        replayed.append(reply.terminal)
    return replayed


async def sweep_all() -> int:
    """`thread_sweep` for every thread with a reply recorded as in flight (at start-up)."""
    rows = await database_sync_to_async(selectors.replies_streaming)()
    before = len(rows)
    for thread_id in {str(row.thread_id) for row in rows}:
        await thread_sweep(thread_id=thread_id)
    after = len(await database_sync_to_async(selectors.replies_streaming)())
    return before - after
