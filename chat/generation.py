"""A reply's life, shared by every transport: start, stream, checkpoint, finish, stop.

A reply runs as its own task owned by this process's `Registry`, so it outlives the socket
that asked for it; subscribers (WebSocket consumers, SSE views) only join the thread's group
and read snapshots. Frames are recorded in the live store before they are published.
"""

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError

from chat import agent, frames, limits, live, selectors, services
from chat.models import Message

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


def thread_group(thread_id: str | uuid.UUID) -> str:
    """The channel-layer group of a thread's subscribers."""
    return f"thread.{thread_id}"


async def publish(thread_id: str, frame: dict[str, Any]) -> None:
    """Send a frame to every subscriber of the thread, on any process."""
    await get_channel_layer().group_send(
        thread_group(thread_id), {"type": "chat.frame", "frame": frame}
    )


def _snapshot_frame(reply: live.LiveReply | None) -> frames.Snapshot | None:
    if reply is None:
        return None
    return {"message_id": reply.message_id, "seq": reply.seq, "content": reply.content}


# --- the per-process registry of replies this process owns ------------------------------


@dataclass
class Run:
    """A reply in flight on this process."""

    thread_id: str
    reply_id: uuid.UUID
    provider: agent.Provider
    task: asyncio.Task | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when this reply's message titled the thread: told after the reply's last frame (so
    # DESIGN's frame order is kept), and maybe replaced by a model-made title.
    new_title: dict[str, Any] | None = None
    first_message: str = ""


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
    client_uuid = uuid.uuid4() if client_id is None else _uuid(client_id, "client_id")
    return await _begin(
        user_id,
        thread_id,
        client_uuid,
        lambda **ids: services.reply_begin(text=text, client_id=client_uuid, **ids),
    )


async def reply_regenerate(*, user_id: int, thread_id: str, client_id: Any = None) -> StartResult:
    """Replace the thread's last finished reply with a new one to the same message."""
    client_uuid = uuid.uuid4() if client_id is None else _uuid(client_id, "client_id")
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
    client_uuid = uuid.uuid4() if client_id is None else _uuid(client_id, "client_id")
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
    run.task = asyncio.create_task(_run_reply(run), name=f"reply-{begun.reply.id}")
    return StartResult(reply_id=str(begun.reply.id), duplicate=False)


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
        message="The server stopped while this reply was being written.",
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


# --- one reply's streaming loop -----------------------------------------------------------

_END = object()


class _Emitter:
    """Numbers frames, records them in the live store, then publishes them."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.seq = 0
        self.content = ""
        self.store = live.store()

    async def emit(self, frame: dict[str, Any], text: str = "") -> None:
        await self.store.append(thread_id=self.run.thread_id, seq=frame["seq"], text=text)
        await publish(self.run.thread_id, frame)

    async def text(self, chunk: str) -> None:
        self.seq += 1
        self.content += chunk
        await self.emit(
            frames.token(message_id=str(self.run.reply_id), seq=self.seq, text=chunk),
            chunk,
        )


async def _produce(
    run: Run, history: list[dict[str, str]], usage: agent.Usage, queue: asyncio.Queue
) -> None:
    """Read the provider's stream into the queue; the consumer decides when to flush."""
    try:
        async for delta in agent.stream_reply(history, chosen=run.provider, usage=usage):
            queue.put_nowait(delta)
        queue.put_nowait(_END)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # handed to the consumer, which owns the error policy
        queue.put_nowait(exc)


async def _run_reply(run: Run) -> None:
    """Stream one reply to its end and persist it; the one error policy of a stream."""
    started = time.monotonic()
    emitter = _Emitter(run)
    reply_id = str(run.reply_id)
    usage = agent.Usage()
    deltas = 0
    first_token_ms: int | None = None
    status, error_code, error_message, recoverable = "complete", "", "", False
    producer: asyncio.Task | None = None
    try:
        await publish(run.thread_id, frames.start(message_id=reply_id, model=run.provider.model))
        history = await database_sync_to_async(selectors.thread_history)(
            thread_id=uuid.UUID(run.thread_id),
            exclude_id=run.reply_id,
            max_chars=run.provider.history_chars,
        )
        queue: asyncio.Queue = asyncio.Queue()
        producer = asyncio.create_task(_produce(run, history, usage, queue))
        stop_wait = asyncio.create_task(run.stopped.wait())
        buffer = ""
        buffer_since = 0.0
        last_chunk = started
        last_checkpoint = started
        deadline = started + settings.STREAM_TIMEOUT
        flush_after = settings.FLUSH_INTERVAL_MS / 1000
        try:
            while True:
                now = time.monotonic()
                wake = min(deadline, last_chunk + settings.STREAM_IDLE_TIMEOUT)
                if buffer:
                    wake = min(wake, buffer_since + flush_after)
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {get, stop_wait},
                    timeout=max(0.0, wake - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if get not in done:
                    get.cancel()
                now = time.monotonic()
                if stop_wait in done:
                    status = "cancelled"
                    break
                if get in done:
                    item = get.result()
                    if item is _END:
                        break
                    if isinstance(item, Exception):
                        raise item
                    deltas += 1
                    last_chunk = now
                    if first_token_ms is None:
                        first_token_ms = int((now - started) * 1000)
                    if not buffer:
                        buffer_since = now
                    buffer += item
                    if len(buffer) < settings.BUFFER_SIZE:
                        continue
                elif buffer and now >= buffer_since + flush_after:
                    pass  # the time window ran out: flush below
                elif now >= deadline:
                    raise agent.ProviderError(
                        f"The reply took longer than {settings.STREAM_TIMEOUT:g} s.",
                        code="timeout",
                    )
                elif now >= last_chunk + settings.STREAM_IDLE_TIMEOUT:
                    raise agent.ProviderError(
                        f"The model sent nothing for {settings.STREAM_IDLE_TIMEOUT:g} s.",
                        code="timeout",
                    )
                else:
                    continue
                if buffer:
                    await emitter.text(buffer)
                    buffer = ""
                if now - last_checkpoint >= settings.CHECKPOINT_SECONDS:
                    last_checkpoint = now
                    await database_sync_to_async(services.reply_checkpoint)(
                        reply_id=run.reply_id, content=emitter.content
                    )
        finally:
            stop_wait.cancel()
            # What was received is shown: the tail goes out before the terminal frame.
            if buffer:
                await emitter.text(buffer)
    except asyncio.CancelledError:
        # The process is shutting down: keep the text, and say the reply did not finish.
        status, error_code, error_message = (
            "interrupted",
            "interrupted",
            "The server stopped.",
        )
        await _finish(
            run,
            emitter,
            status,
            error_code,
            error_message,
            True,
            started,
            first_token_ms,
            deltas,
            usage,
        )
        raise
    except agent.ProviderError as exc:
        status, error_code, error_message, recoverable = (
            "error",
            exc.code,
            str(exc),
            exc.recoverable,
        )
    except Exception:
        logger.exception("reply %s failed", reply_id)
        status, error_code, error_message, recoverable = (
            "error",
            "internal",
            "Something went wrong on the server.",
            True,
        )
    finally:
        if producer is not None:
            producer.cancel()
    await _finish(
        run,
        emitter,
        status,
        error_code,
        error_message,
        recoverable,
        started,
        first_token_ms,
        deltas,
        usage,
    )


async def _finish(
    run: Run,
    emitter: _Emitter,
    status: str,
    error_code: str,
    error_message: str,
    recoverable: bool,
    started: float,
    first_token_ms: int | None,
    deltas: int,
    usage: agent.Usage,
) -> None:
    """The one final write, then the terminal frame; the live record is closed in between.

    Closing the record before publishing the terminal frame means a subscriber either saw the
    reply in flight (and, having joined the group first, gets the terminal frame) or reads the
    finished reply from the database: never a reply stuck `streaming` on screen.
    """
    elapsed_ms = int((time.monotonic() - started) * 1000)
    tokens = usage.output_tokens if usage.output_tokens is not None else deltas
    reply_id = str(run.reply_id)
    seq = emitter.seq + 1
    if status in ("complete", "cancelled"):
        metrics = frames.metrics(
            tokens=tokens, elapsed_ms=elapsed_ms, first_token_ms=first_token_ms
        )
        terminal = frames.complete(message_id=reply_id, seq=seq, status=status, metrics=metrics)
    else:
        terminal = frames.error(
            code=error_code,
            message=error_message,
            recoverable=recoverable,
            message_id=reply_id,
            seq=seq,
        )
    try:
        await database_sync_to_async(services.reply_finish)(
            reply_id=run.reply_id,
            content=emitter.content,
            status=status,
            error_code=error_code,
            error_message=error_message,
            token_count=tokens,
            first_token_ms=first_token_ms,
            elapsed_ms=elapsed_ms,
        )
    finally:
        await emitter.store.finish(thread_id=run.thread_id, message_id=reply_id, terminal=terminal)
        registry().runs.pop(run.thread_id, None)
    await publish(run.thread_id, terminal)
    if run.new_title is not None:
        await publish(run.thread_id, frames.thread(thread=run.new_title))
        if status == "complete" and not run.provider.offline_demo:
            asyncio.create_task(_retitle(run), name=f"title-{reply_id}")
    logger.info(
        "reply %s thread=%s status=%s chars=%d tokens=%d frames=%d elapsed_ms=%d ttft_ms=%s%s",
        reply_id,
        run.thread_id,
        status,
        len(emitter.content),
        tokens,
        seq,
        elapsed_ms,
        first_token_ms,
        f" error={error_code}" if error_code else "",
    )


async def sweep_all() -> int:
    """`thread_sweep` for every thread with a reply recorded as in flight (at start-up)."""
    rows = await database_sync_to_async(selectors.replies_streaming)()
    before = len(rows)
    for thread_id in {str(row.thread_id) for row in rows}:
        await thread_sweep(thread_id=thread_id)
    after = len(await database_sync_to_async(selectors.replies_streaming)())
    return before - after


async def _retitle(run: Run) -> None:
    """Best effort: replace a title cut from the first message by one the model writes."""
    try:
        title = await agent.make_title(run.first_message, chosen=run.provider)
        thread = await database_sync_to_async(services.thread_retitle)(
            thread_id=uuid.UUID(run.thread_id), title=title, expected=run.new_title["title"]
        )
    except Exception:
        logger.warning("thread %s: no model-made title", run.thread_id, exc_info=True)
        return
    if thread is not None:
        await publish(run.thread_id, frames.thread(thread=selectors.thread_payload(thread)))
