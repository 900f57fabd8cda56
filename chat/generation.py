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

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from chat import (
    agent,
    frames,
    inputs,
    limits,
    live,
    outage,
    quota,
    selectors,
    services,
    shutdown,
    tasks,
)
from chat.broadcast import publish, publish_strictly
from chat.models import Message
from chat.outage import Softly
from chat.reply import CANCELLED, SHUT_DOWN, ReplyStream, Run

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
        self.draining = False  # shutting down: no new replies
        self.claims: set[str] = set()  # replies claimed and being committed, not yet running
        self._listener: asyncio.Task | None = None
        self._beat: asyncio.Task | None = None
        self._checkpoints: asyncio.Task | None = None
        self._opening = asyncio.Lock()

    async def owner(self) -> str:
        """This process's control channel, listening from the first call on.

        Locked: replies started together on a fresh process would otherwise each open a
        channel, the last one kept, and the others' replies named an owner that nobody
        beats for, taken for dead OWNER_TTL_SECONDS later.
        """
        async with self._opening:
            return await self._open()

    async def _open(self) -> str:
        if not self.channel:
            # The default prefix matters on channels-redis: every "specific." channel of a
            # process shares one receive loop, while another prefix would contend for the
            # layer's receive lock and delay the consumers' frames by seconds.
            self.channel = await outage.retrying(
                "opening the owner channel", get_channel_layer().new_channel
            )
            self._listener = tasks.background(self._listen(), name="chat-owner-listener")
            self._beat = tasks.background(self._keep_alive(), name="chat-owner-beat")
            self._checkpoints = tasks.background(self._checkpoint(), name="chat-checkpoints")
            shutdown.install(self)
        return self.channel

    async def close(self, timeout: float = 5) -> None:
        """Let this process's replies finish (up to `timeout`), then stop listening."""
        running = [run.task for run in self.runs.values() if run.task is not None]
        if running:
            await asyncio.wait(running, timeout=timeout)
        background = [t for t in (self._listener, self._beat, self._checkpoints) if t is not None]
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background, timeout=timeout)
        self.channel = ""

    async def drain(self, seconds: float) -> None:
        """Stop taking replies, let the running ones go on for up to `seconds`, then end the
        rest as `interrupted` with their shown text saved and their clients told."""
        self.draining = True
        running = [run for run in self.runs.values() if run.task is not None]
        logger.warning("shutting down: draining %d replies for up to %g s", len(running), seconds)
        if running:
            await asyncio.wait([run.task for run in running], timeout=seconds)
        left = [run for run in running if not run.task.done()]
        for run in left:
            run.stop(SHUT_DOWN)
        if left:
            # Their final saves ride out an outage like any other (OUTAGE_SECONDS).
            await asyncio.wait([run.task for run in left], timeout=settings.OUTAGE_SECONDS + 5)
        logger.warning(
            "shutting down: %d replies finished, %d interrupted",
            len(running) - len(left),
            len(left),
        )

    async def _listen(self) -> None:
        layer = get_channel_layer()
        await outage.receive_forever(
            "owner channel", lambda: layer.receive(self.channel), self._handle
        )

    async def _handle(self, event: dict[str, Any]) -> None:
        if event.get("type") == "reply.stop":
            self.stop_local(event["thread_id"])

    async def _keep_alive(self) -> None:
        """Say this process lives, and write back the live records of its replies that a
        Redis restart lost (before anyone takes a missing record for a dead reply)."""
        health = Softly("owner heartbeat")
        while True:
            try:
                store = live.store()
                await store.owner_beat(owner=self.channel)
                streaming = self._streaming()
                lost = await store.missing(
                    replies={t: stream.reply_id for t, stream in streaming.items()}
                )
                for thread_id in lost:
                    stream = streaming[thread_id]
                    stream.recorded = await store.restore(
                        thread_id=thread_id, reply=stream.live_record()
                    )
            except Exception as exc:
                health.failed(exc)
            else:
                health.succeeded()
            await asyncio.sleep(live.owner_beat_seconds())

    async def _checkpoint(self) -> None:
        """Every CHECKPOINT_SECONDS, save the text of all this process's replies in flight in
        one database call: one trip per tick however many replies stream, and never in a
        reply's token loop. A failed tick (an outage) is made good by the next."""
        health = Softly("checkpoints")
        while True:
            await asyncio.sleep(settings.CHECKPOINT_SECONDS)
            due = {
                stream.run.reply_id: (stream, stream.content)
                for stream in self._streaming().values()
                if len(stream.content) > stream.checkpointed
            }
            if not due:
                continue
            try:
                await outage.off_loop(services.replies_checkpoint)(
                    contents={reply_id: content for reply_id, (_, content) in due.items()}
                )
            except Exception as exc:
                health.failed(exc)
                continue
            health.succeeded()
            for stream, content in due.values():
                stream.checkpointed = len(content)

    def _streaming(self) -> dict[str, ReplyStream]:
        """thread_id -> the stream of each of this process's replies still streaming."""
        return {
            run.thread_id: run.stream
            for run in list(self.runs.values())
            if run.stream is not None and run.stream.terminal is None
        }

    def stop_local(self, thread_id: str) -> bool:
        """Stop the thread's reply if this process runs it."""
        run = self.runs.get(thread_id)
        if run is None:
            return False
        run.stop(CANCELLED)
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
    if (problem := inputs.text_problem(text)) is not None:
        raise GenerationError("bad_request", problem)
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


async def _existing_send(thread_id: str, client_id: uuid.UUID) -> Message | None:
    """The reply that answered this `client_id` already, if any (through an outage)."""
    return await outage.db(
        f"looking up send {client_id}", _sent, thread_id=thread_id, client_id=client_id
    )


def _sent(*, thread_id: str, client_id: uuid.UUID) -> Message | None:
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
    """The one way a reply begins: claim the thread, commit, announce, spawn the task.

    Every step rides out a database or Redis outage of up to OUTAGE_SECONDS, so a message
    sent during a restart is answered once it is over rather than refused.
    """
    thread_id = str(thread_id)
    reg = registry()
    if reg.draining:
        raise GenerationError(
            "interrupted",
            "This server is restarting; send your message again.",
            recoverable=True,
        )
    allowed = await outage.retrying(
        "counting the reply rate", lambda: limits.reply_allowed(user_id=user_id)
    )
    if not allowed:
        raise GenerationError(
            "rate_limited",
            f"At most {settings.REPLIES_PER_MINUTE} replies a minute; try again shortly.",
            recoverable=True,
        )
    chosen = _provider()
    owner = await reg.owner()
    reply_id = uuid.uuid4()
    if not await outage.retrying(
        "counting replies in flight",
        lambda: limits.in_flight_begin(user_id=user_id, reply_id=str(reply_id)),
    ):
        raise GenerationError(
            "rate_limited",
            f"At most {settings.MAX_REPLIES_IN_FLIGHT} replies at once; wait for one to end.",
            recoverable=True,
        )
    hold = None
    try:
        hold = await outage.db(
            "holding the reply's tokens",
            quota.reserve,
            user_id=user_id,
            tokens=settings.REPLY_MAX_TOKENS,
        )
        if hold is None:
            raise GenerationError(
                "quota_exceeded",
                f"Today's budget of {settings.DAILY_TOKEN_BUDGET} tokens is spent; "
                "it renews at midnight UTC.",
            )
        result = await _claim_and_commit(
            user_id, thread_id, client_uuid, write, chosen, owner, reply_id, hold
        )
    except BaseException:
        await _let_go(user_id, reply_id, hold, spent=0)
        raise
    if result.duplicate:
        await _let_go(user_id, reply_id, hold, spent=0)
    return result


async def _let_go(
    user_id: int, reply_id: uuid.UUID, hold: quota.Hold | None, *, spent: int
) -> None:
    """The reply is no longer in flight: count it out, and settle its tokens."""
    await outage.attempt(
        f"counting reply {reply_id} out of the replies in flight",
        lambda: limits.in_flight_end(user_id=user_id, reply_id=str(reply_id)),
    )
    if hold is not None:
        await outage.attempt(
            f"settling the tokens of reply {reply_id}",
            lambda: outage.off_loop(quota.settle)(hold, spent=spent),
        )


async def _claim_and_commit(
    user_id: int,
    thread_id: str,
    client_uuid: uuid.UUID,
    write: Callable[..., services.Begun],
    chosen: agent.Provider,
    owner: str,
    reply_id: uuid.UUID,
    hold: quota.Hold,
) -> StartResult:
    reg = registry()
    store = live.store()
    # Claim the thread before the database knows the reply, so a `streaming` row always has
    # a live record while its owner lives (that is how dead owners are told apart). A retried
    # send is told apart only when something refuses it (the claim: its reply still runs; the
    # commit: its client_id is taken), so a first send costs no lookup.
    claimed = await outage.retrying(
        f"claiming thread {thread_id}",
        lambda: store.claim(
            thread_id=thread_id, message_id=str(reply_id), owner=owner, model=chosen.model
        ),
    )
    if not claimed:
        if (sent := await _existing_send(thread_id, client_uuid)) is not None:
            return StartResult(reply_id=str(sent.id), duplicate=True)
        raise GenerationError(
            "busy", "A reply is already being written in this thread.", recoverable=True
        )
    reg.claims.add(str(reply_id))
    try:
        begun = await _commit(thread_id, reply_id, chosen, write)
    except BaseException as exc:
        reg.claims.discard(str(reply_id))
        await _release(store, thread_id, reply_id)
        if isinstance(exc, IntegrityError | services.AlreadySent):  # a retried command
            sent = await _existing_send(thread_id, client_uuid)
            return StartResult(reply_id=str(sent.id) if sent else "", duplicate=True)
        if isinstance(exc, services.Refused):
            raise GenerationError("bad_request", str(exc)) from None
        raise
    run = Run(
        thread_id=thread_id,
        reply_id=begun.reply.id,
        provider=chosen,
        owner=owner,
        user_id=user_id,
        hold=hold,
        new_title=selectors.thread_payload(begun.thread) if begun.thread else None,
        first_message=begun.user_message.content if begun.thread else "",
        history=begun.history,
    )
    reg.runs[thread_id] = run
    reg.claims.discard(str(reply_id))
    # Published after the commit above: no subscriber sees a message a rollback removed.
    if begun.removed_ids:
        await publish(thread_id, frames.removed(message_ids=begun.removed_ids))
    if begun.user_message is not None:
        await publish(
            thread_id, frames.message(message=selectors.message_payload(begun.user_message))
        )
    run.task = tasks.background(_own(run), name=f"reply-{begun.reply.id}")
    return StartResult(reply_id=str(begun.reply.id), duplicate=False)


async def _commit(
    thread_id: str,
    reply_id: uuid.UUID,
    chosen: agent.Provider,
    write: Callable[..., services.Begun],
) -> services.Begun:
    """The begin's one transaction, and the agent's input read on the same connection: one
    trip to the database per reply start. Retried through an outage; a connection that dropped
    after the commit but before its answer must not make a second reply, so a retry first
    looks for what the lost attempt committed."""
    attempts = 0

    def attempt() -> services.Begun:
        nonlocal attempts
        attempts += 1
        begun = services.reply_begun(reply_id=reply_id) if attempts > 1 else None
        if begun is None:
            begun = write(thread_id=uuid.UUID(thread_id), reply_id=reply_id, model=chosen.model)
        begun.history = selectors.thread_history(
            thread_id=uuid.UUID(thread_id), exclude_id=reply_id, max_chars=chosen.history_chars
        )
        return begun

    return await outage.retrying(f"committing reply {reply_id}", outage.off_loop(attempt))


async def _release(store: live.LiveStore, thread_id: str, reply_id: uuid.UUID) -> None:
    await outage.attempt(
        f"releasing the claim of reply {reply_id} on thread {thread_id}",
        lambda: store.release(thread_id=thread_id, message_id=str(reply_id)),
    )


async def _own(run: Run) -> None:
    """Run the reply as this process's task; it outlives the socket that asked for it."""
    stream = ReplyStream(run)
    try:
        await stream.run_to_end()
    except Exception:
        logger.exception("reply %s: its task failed", run.reply_id)
    finally:
        reg = registry()
        if reg.runs.get(run.thread_id) is run:  # a next reply may already be registered
            del reg.runs[run.thread_id]
        await _let_go(run.user_id, run.reply_id, run.hold, spent=stream.tokens_spent)


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
        await _interrupt(thread_id, reply, reply_id=uuid.UUID(reply.message_id))
        return True
    await outage.retrying(
        f"sending stop to {reply.owner}",
        lambda: get_channel_layer().send(
            reply.owner, {"type": "reply.stop", "thread_id": thread_id}
        ),
    )
    return True


async def reply_force_stop(*, thread_id: str, reply_id: uuid.UUID) -> bool:
    """An operator's stop: ask the owner; a reply with no live owner is marked interrupted."""
    if await reply_stop(thread_id=thread_id):
        return True
    await _interrupt(str(thread_id), None, reply_id=reply_id)
    return False


def _running_here(thread_id: str) -> live.LiveReply | None:
    """The record of the thread's reply if this process streams it, from the stream itself:
    the same record as the live store's, and ahead of it by the frame being recorded, which
    this process's subscribers were handed already (ReplyStream._flush)."""
    run = registry().runs.get(thread_id)
    if run is None or run.stream is None or run.stream.terminal is not None:
        return None
    return run.stream.live_record()


async def thread_snapshot(*, thread_id: str) -> frames.Snapshot | None:
    """The thread's reply in flight as `ready.active`, after marking dead owners' replies."""
    thread_id = str(thread_id)
    if (here := _running_here(thread_id)) is not None:
        return _snapshot_frame(here)
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    if reply is not None and not await _alive(reply):
        await _interrupt(thread_id, reply, reply_id=uuid.UUID(reply.message_id))
        reply = None
    return _snapshot_frame(reply)


async def _alive(reply: live.LiveReply) -> bool:
    reg = registry()
    if reply.owner == reg.channel:
        return reply.message_id in reg.claims or any(
            str(run.reply_id) == reply.message_id for run in reg.runs.values()
        )
    return await live.store().owner_alive(owner=reply.owner)


def _past_any_reply(row: Message) -> bool:
    """Whether the row is older than any reply can run, final save included: its owner is
    gone, whatever became of its live record."""
    longest = settings.STREAM_TIMEOUT + settings.OUTAGE_SECONDS + settings.OWNER_TTL_SECONDS
    return (timezone.now() - row.created_at).total_seconds() > longest


async def thread_sweep(*, thread_id: str) -> None:
    """Settle the thread's replies left `streaming` by a process that died or could not save.

    By the reply's live record: one whose owner is dead becomes `interrupted` with the text
    its clients were shown; one that ended (its clients were told) but whose final save did
    not land is saved from the record. A shared store may have lost a record in a Redis
    restart while the reply runs on (its owner writes it back): with no record, a row is only
    swept once it is older than any reply can run.
    """
    thread_id = str(thread_id)
    rows = await outage.db(
        f"replies in flight of thread {thread_id}",
        selectors.replies_streaming,
        thread_id=thread_id,
    )
    if not rows:
        return
    store = live.store()
    record = await store.record(thread_id=thread_id)
    for row in rows:
        mine = record if record is not None and record.message_id == str(row.id) else None
        if mine is not None and mine.done:
            await _settle(row.id, mine)
        elif mine is not None:
            if not await _alive(mine):
                await _interrupt(thread_id, mine, reply_id=row.id)
        elif not store.shared or _past_any_reply(row):
            await _interrupt(thread_id, None, reply_id=row.id)


async def _settle(reply_id: uuid.UUID, record: live.LiveReply) -> None:
    """Save an ended reply from its live record: the outcome its clients were told."""
    terminal = record.terminal
    if terminal["type"] == "complete":
        status, code, message = terminal["status"], "", ""
    else:
        code, message = terminal["code"], terminal["message"]
        status = "interrupted" if code == "interrupted" else "error"
    metrics = terminal.get("metrics") or {}
    await outage.db(
        f"saving ended reply {reply_id}",
        services.reply_finish,
        reply_id=reply_id,
        content=record.content,
        status=status,
        error_code=code,
        error_message=message,
        token_count=metrics.get("totalTokens"),
        first_token_ms=metrics.get("timeToFirstTokenMs"),
        elapsed_ms=int(metrics["elapsedSeconds"] * 1000) if "elapsedSeconds" in metrics else None,
    )
    logger.warning("reply %s: saved from its live record (%s)", reply_id, status)


async def _interrupt(thread_id: str, record: live.LiveReply | None, *, reply_id: uuid.UUID) -> None:
    """Save a reply whose process died as `interrupted`, with the text its clients were shown
    (the live record's), and tell them with the next `seq`.

    With no record left (its process has been gone for long, or it was the only process) the
    last checkpoint is kept, and the frame's seq is unknown: a client still showing the reply
    learns its end from the database at its next heartbeat or resync.
    """
    terminal = frames.error(
        code="interrupted",
        message=services.INTERRUPTED_MESSAGE,
        recoverable=True,
        message_id=str(reply_id),
        seq=(record.seq + 1) if record is not None else 1,
    )
    interrupted = await outage.db(
        f"interrupting reply {reply_id}",
        services.reply_interrupt,
        reply_id=reply_id,
        content=record.content if record is not None else None,
    )
    if record is not None:
        store = live.store()
        await outage.retrying(
            f"closing the live record of reply {reply_id}",
            lambda: store.finish(thread_id=thread_id, message_id=str(reply_id), terminal=terminal),
        )
    if interrupted:
        logger.warning("reply %s interrupted: its process died", reply_id)
        await outage.retrying(
            f"terminal frame of reply {reply_id}", lambda: publish_strictly(thread_id, terminal)
        )


async def thread_replay(
    *, thread_id: str, message_id: str | None, after_seq: int
) -> list[dict[str, Any]] | None:
    """The frames of the thread's latest reply after `after_seq`, exactly as they were sent.

    None when that reply is no longer recorded (the caller starts over from `ready`). With no
    `message_id`, the latest reply is meant.
    """
    reply = _running_here(str(thread_id)) or await live.store().record(thread_id=str(thread_id))
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
    rows = await outage.off_loop(selectors.replies_streaming)()
    before = len(rows)
    for thread_id in {str(row.thread_id) for row in rows}:
        await thread_sweep(thread_id=thread_id)
    after = len(await outage.off_loop(selectors.replies_streaming)())
    return before - after
