"""Which process owns each reply, and what becomes of a reply whose owner died.

Every process keeps a `Registry` of the replies it runs: their tasks, its control channel
(where `stop` from other processes arrives), a heartbeat that says it lives, and one
checkpoint tick for all its replies. A reply is claimed in the live store before the
database knows it (`Claim`), so a `streaming` row has a live record while its owner lives.

Reaping is an explicit step, never a side effect of a read: `thread_reap` settles a thread's
replies left `streaming` by a process that died (interrupted, with the text its clients were
shown) or that could not save its end, before a `ready`; `reap_orphan` ends a reply whose
owner died, at a heartbeat; `reap_all` does every thread, at start-up (`sweep_replies`) and
every few OWNER_TTL_SECONDS from each process's sweeper, so no dead reply waits for a reader.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chat import dbthread, frames, metrics, outage, runtime, selectors, services, shutdown, tasks
from chat.engine import live
from chat.engine.broadcast import publish_strictly
from chat.engine.run import CANCELLED, SHUT_DOWN, ReplyStream, Run
from chat.models import Message
from chat.outage import Softly

logger = logging.getLogger(__name__)


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

    async def open(self) -> str:
        """Open this process's control channel (once), start listening on it, beating for
        it and checkpointing, and return its name: the owner named in live records.

        Locked: replies started together on a fresh process would otherwise each open a
        channel, the last one kept, and the others' replies named an owner that nobody
        beats for, taken for dead OWNER_TTL_SECONDS later.
        """
        async with self._opening:
            if self.channel:
                return self.channel
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

    async def settle(self, timeout: float = 5) -> None:
        """Let this process's replies finish (up to `timeout`), then stop listening
        (runtime.close)."""
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
                await dbthread.off_loop(services.replies_checkpoint)(
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

    def owns(self, message_id: str) -> bool:
        """Whether this process runs the reply, or is beginning it."""
        return message_id in self.claims or any(
            str(run.reply_id) == message_id for run in self.runs.values()
        )

    def running_here(self, thread_id: str) -> live.LiveReply | None:
        """The record of the thread's reply if this process streams it, from the stream
        itself: the same record as the live store's, and ahead of it by the frame being
        recorded, which this process's subscribers were handed already (ReplyStream._flush)."""
        run = self.runs.get(thread_id)
        if run is None or run.stream is None or run.stream.terminal is not None:
            return None
        return run.stream.live_record()

    def claim(self, thread_id: str, reply_id: uuid.UUID, model: str) -> "Claim":
        """`async with reg.claim(...) as claim:` the thread for a reply being begun."""
        return Claim(self, thread_id, reply_id, model)

    def stop_local(self, thread_id: str, reply_id: str | None = None) -> bool:
        """Stop the thread's reply if this process runs it (and it is `reply_id`, if given)."""
        run = self.runs.get(thread_id)
        if run is None or (reply_id is not None and str(run.reply_id) != reply_id):
            return False
        run.stop(CANCELLED)
        return True


class Claim:
    """A thread claimed in the live store for a reply being begun, before the database knows
    the reply: so a `streaming` row always has a live record while its owner lives, which is
    how dead owners are told apart.

    `async with`: `taken` says whether the thread was free. On the way out the claim is given
    back, unless the reply began and took it over (`taken_over()`).
    """

    def __init__(self, reg: Registry, thread_id: str, reply_id: uuid.UUID, model: str) -> None:
        self.reg, self.thread_id, self.reply_id, self.model = reg, thread_id, reply_id, model
        self.taken = False
        self._kept = False

    async def __aenter__(self) -> "Claim":
        store = live.store()
        self.taken = await outage.retrying(
            f"claiming thread {self.thread_id}",
            lambda: store.claim(
                thread_id=self.thread_id,
                message_id=str(self.reply_id),
                owner=self.reg.channel,
                model=self.model,
            ),
        )
        if self.taken:
            self.reg.claims.add(str(self.reply_id))
        return self

    def taken_over(self) -> None:
        """The reply is registered and runs: the claim is its live record now."""
        self._kept = True
        self.reg.claims.discard(str(self.reply_id))

    async def __aexit__(self, *exc_info: object) -> None:
        if not self.taken or self._kept:
            return
        self.reg.claims.discard(str(self.reply_id))
        store = live.store()
        await outage.attempt(
            f"releasing the claim of reply {self.reply_id} on thread {self.thread_id}",
            lambda: store.release(thread_id=self.thread_id, message_id=str(self.reply_id)),
        )


def registry() -> Registry:
    """This event loop's registry (one per daphne process; kept by runtime.py)."""
    return runtime.slot("registry", Registry)


async def owner_alive(reply: live.LiveReply) -> bool:
    """Whether the process that owns the reply still lives (this one: still runs it)."""
    reg = registry()
    if reply.owner == reg.channel:
        return reg.owns(reply.message_id)
    return await live.store().owner_alive(owner=reply.owner)


# --- reaping ---------------------------------------------------------------------------------


def _past_any_reply(row: Message) -> bool:
    """Whether the row is older than any reply can run, final save included: its owner is
    gone, whatever became of its live record."""
    longest = settings.STREAM_TIMEOUT + settings.OUTAGE_SECONDS + settings.OWNER_TTL_SECONDS
    return (timezone.now() - row.created_at).total_seconds() > longest


async def thread_reap(*, thread_id: str) -> None:
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
            if not await owner_alive(mine):
                await interrupt(thread_id, mine, reply_id=row.id)
        elif not store.shared or _past_any_reply(row):
            await interrupt(thread_id, None, reply_id=row.id)


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


async def interrupt(thread_id: str, record: live.LiveReply | None, *, reply_id: uuid.UUID) -> None:
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
        steps=record.steps() if record is not None else None,
        frames_shown=record.seq if record is not None else 0,
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


async def reap_orphan(*, thread_id: str) -> live.LiveReply | None:
    """The cheap reap of a heartbeat: end the thread's reply in flight if its owner died
    (by its live record only; `thread_reap` also settles what the database holds). Returns
    the reply still in flight, read once for both."""
    thread_id = str(thread_id)
    if (here := registry().running_here(thread_id)) is not None:
        return here
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    if reply is not None and not await owner_alive(reply):
        await interrupt(thread_id, reply, reply_id=uuid.UUID(reply.message_id))
        return None
    return reply


async def reap_all() -> int:
    """`thread_reap` for every thread with a reply recorded as in flight (at start-up), but
    the replies this process runs: their owner is alive, so a sweep during a burst does not
    read every one of them again."""
    rows = await dbthread.off_loop(selectors.replies_streaming)()
    before = len(rows)
    reg = registry()
    here = reg.claims | {str(run.reply_id) for run in reg.runs.values()}
    for thread_id in {str(row.thread_id) for row in rows if str(row.id) not in here}:
        await thread_reap(thread_id=thread_id)
    after = len(await dbthread.off_loop(selectors.replies_streaming)())
    return before - after


# --- sweeping ---------------------------------------------------------------------------------


def sweep_seconds() -> float:
    """How often a process sweeps for replies of dead processes."""
    return 3 * settings.OWNER_TTL_SECONDS


def sweep_soon() -> None:
    """Start this process's sweeper, once (called on every request: the first one starts it,
    so a restarted process settles what a dead one left before anyone opens a thread)."""
    runtime.slot("sweeper", lambda: tasks.background(_sweep_forever(), name="chat-sweeper"))


async def _sweep_forever() -> None:
    """`reap_all` every `sweep_seconds()`, the first after OWNER_TTL_SECONDS (when a dead
    owner's beat has lapsed): a reply whose process died ends `interrupted` and gives back
    the tokens it held without waiting for someone to open its thread. Uploads never sent
    are removed a day after they came (services.attachments_sweep), expired shares once
    they expire (services.shares_sweep: they answer 404 before that). With several
    processes one sweeps per period (a Redis lock), so the database is read once a period."""
    health = Softly("sweeping the replies of dead processes")
    await asyncio.sleep(settings.OWNER_TTL_SECONDS)
    while True:
        try:
            if await live.store().sweep_turn(seconds=sweep_seconds()):
                swept = await reap_all()
                if swept:
                    logger.warning("swept %d replies left by processes that died", swept)
                if removed := await dbthread.off_loop(services.attachments_sweep)():
                    logger.info("removed %d uploads never sent, a day old", removed)
                if expired := await dbthread.off_loop(services.shares_sweep)():
                    logger.info("removed %d expired shares", expired)
        except Exception as exc:
            health.failed(exc)
        else:
            health.succeeded()
        await asyncio.sleep(sweep_seconds())


class Sweeping:
    """ASGI: every request makes sure this process's sweeper runs (`sweep_soon`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    _asgi_single_callable = True  # returns the inner application's coroutine (proxy.py)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        if scope["type"] in ("http", "websocket"):
            sweep_soon()
        metrics.watch_loop()
        return self.inner(scope, receive, send)
