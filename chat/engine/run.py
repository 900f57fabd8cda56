"""One reply's life once it has begun: stream the agent's deltas, coalesce them into numbered
frames, and end with one write and one terminal frame.

Frames are recorded in the live store before they are published (see live.py). The database
is written once at the end, never per token; meanwhile the process's registry checkpoints the
text of all its replies together every CHECKPOINT_SECONDS (ownership.Registry).
"""

import asyncio
import functools
import json
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from chat import (
    agent,
    catalog,
    dbthread,
    errors,
    frames,
    metrics,
    outage,
    quota,
    services,
    tasks,
    tools,
)
from chat.engine import broadcast, live
from chat.engine.broadcast import publish, publish_strictly
from chat.engine.coalescer import Coalescer
from chat.errors import ChatError
from chat.outage import Softly

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContinuedFrom:
    """A reply cut by the token limit that this run extends: its text and tool steps so far,
    its last frame's `seq` (its terminal frame's), after which its frames carry on, and its
    metrics so far, which the continued reply's cover too."""

    content: str
    seq: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    elapsed_ms: int = 0
    first_token_ms: int | None = None


@dataclass
class Run:
    """A reply in flight on this process."""

    thread_id: str
    reply_id: uuid.UUID
    provider: catalog.Model  # the model writing it, and its provider
    owner: str = ""  # this process's control channel, as the live record names it
    user_id: int = 0  # who asked: the reply counts among their replies in flight
    time_zone: str = "UTC"  # the asker's, for tools that tell the time
    hold: "quota.Hold | None" = None  # tokens held from the user's budget: its max_tokens
    task: asyncio.Task | None = None
    # Set by `stop`: a user's `stop` (cancelled) or this process shutting down.
    stop_outcome: "Outcome | None" = None
    inbox: "_Inbox | None" = None  # set while the reply streams: woken by `stop`
    stream: "ReplyStream | None" = None  # set while the reply streams: its live state
    # Set when this reply's message titled the thread: told after the reply's last frame (so
    # docs/protocol.md's frame order is kept), and maybe replaced by a model-made title.
    new_title: dict[str, Any] | None = None
    first_message: str = ""
    history: list[dict[str, str]] = field(default_factory=list)  # the agent's input
    history_left_out: int = 0  # older messages its model's window could not take
    instructions: str = ""  # the asker's own instructions (their settings), read at the begin
    continued: ContinuedFrom | None = None  # set when this run extends a truncated reply
    model_changed: dict[str, Any] | None = None  # the thread, when this reply changed its model

    @property
    def stopped(self) -> bool:
        """Whether the reply was asked to end."""
        return self.stop_outcome is not None

    def stop(self, outcome: "Outcome") -> None:
        """End the reply soon with this outcome (the first reason given wins)."""
        if self.stop_outcome is None:
            self.stop_outcome = outcome
        if self.inbox is not None:
            self.inbox.wake()


@dataclass(frozen=True)
class Outcome:
    """How a reply ended."""

    status: frames.EndStatus
    code: str = ""
    message: str = ""
    recoverable: bool = False


CANCELLED = Outcome("cancelled")
SHUT_DOWN = Outcome("interrupted", "interrupted", services.INTERRUPTED_MESSAGE, True)


# What the wait for the next event can return besides a delta, an exception or the end.
_END, _STOPPED, _TICK = object(), object(), object()


class ReplyStream:
    """Streams one reply to its end; `run_to_end()` is the one error policy of a stream.

    The stream's own state (`content`, `offsets`, `seq`) is the truth of what was shown: the
    live record and the database are copies of it, so either may be lost for a while (an
    outage) and be written again whole.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        run.stream = self
        self.reply_id = str(run.reply_id)
        self.store = live.store()
        self.started = time.monotonic()
        self.seq = 0
        self.content = ""  # the text of the frames sent: what users were shown
        self.offsets = [0]  # len(content) after each frame, as the live record keeps them
        # Received, not yet sent; says when that becomes a frame.
        self.pending = Coalescer(settings.BUFFER_SIZE, settings.FLUSH_INTERVAL_MS / 1000)
        self.deltas = 0
        self.first_token_ms: int | None = None
        self.usage = agent.Usage()
        self.terminal: dict[str, Any] | None = None
        # A model-made title is due: `generation._own` starts `retitle` once the reply's own
        # tokens are settled, so the title's hold never finds them still held.
        self.titling = False
        self.recorded = True  # whether the live record holds every frame sent
        self._record_health = Softly(f"live record of reply {self.reply_id}")
        self.checkpointed = 0  # len(content) last saved by a checkpoint
        self.steps: dict[str, frames.Step] = {}  # the reply's tool steps by call id, in order
        self.tools: dict[int, dict[str, Any]] = {}  # its tool frames by seq (live.LiveReply)
        self.step_started: dict[str, float] = {}
        self.context = tools.ChatContext(user_id=run.user_id, time_zone=run.time_zone)
        if (was := run.continued) is not None:
            # Its whole text so far counts as frame `seq`, as its live record has it.
            self.seq = was.seq
            self.content = was.content
            self.offsets = [0] * was.seq + [len(was.content)]
            self.checkpointed = len(was.content)
            self.steps = {step["call_id"]: step for step in was.steps}

    @property
    def tokens_spent(self) -> int:
        """Output tokens as the provider counted them, else one per delta received."""
        return self.usage.output_tokens if self.usage.output_tokens is not None else self.deltas

    async def run_to_end(self) -> None:
        """Stream, then persist the outcome; never raises but for cancellation."""
        try:
            outcome = await self._stream()
        except asyncio.CancelledError:
            # Cancelled from outside (the event loop is closing): keep the text, and say the
            # reply did not finish. A graceful shutdown stops replies with SHUT_DOWN instead.
            await self._finish(SHUT_DOWN)
            raise
        except ChatError as exc:
            outcome = Outcome("error", exc.code, exc.message, exc.recoverable)
        except Exception:
            exc = errors.unexpected(f"reply {self.reply_id}")
            outcome = Outcome("error", exc.code, exc.message, exc.recoverable)
        await self._finish(outcome)

    def live_record(self) -> live.LiveReply:
        """The reply's live record as this stream knows it (to restore a lost one)."""
        return live.LiveReply(
            message_id=self.reply_id,
            owner=self.run.owner,
            seq=self.seq,
            content=self.content,
            model=self.run.provider.id,
            offsets=list(self.offsets),
            terminal=self.terminal,
            tools=dict(self.tools),
        )

    async def _stream(self) -> Outcome:
        """Coalesce deltas into frames: BUFFER_SIZE characters or FLUSH_INTERVAL_MS, whichever
        comes first; end on the provider's end, `stop`, or a timeout (raised)."""
        if self.run.continued is None:  # a continued reply's frames carry on its seq
            await publish(
                self.run.thread_id,
                frames.start(
                    message_id=self.reply_id,
                    model=self.run.provider.id,
                    history_left_out=self.run.history_left_out,
                ),
            )
        if self.run.model_changed is not None:
            await _publish_thread(self.run, frames.thread(thread=self.run.model_changed))
        self.run.inbox = inbox = _Inbox()
        producer = asyncio.create_task(self._produce(self.run.history, inbox))
        deadline = self.started + settings.STREAM_TIMEOUT
        last_chunk = self.started
        try:
            while True:
                wake = min(deadline, last_chunk + settings.STREAM_IDLE_TIMEOUT)
                if (flush_at := self.pending.flush_at) is not None:
                    wake = min(wake, flush_at)
                item = await self._next(inbox, wake - time.monotonic())
                now = time.monotonic()
                if item is _STOPPED:
                    return self.run.stop_outcome
                if item is _END:
                    return Outcome("complete")
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, agent.ToolEvent):
                    last_chunk = now
                    await self._flush()  # the text before the step is shown before it
                    await self._step(item, now)
                    continue
                if isinstance(item, str):
                    last_chunk = now
                    if not self._received(item, now):
                        continue
                    # Deltas that queued up while the last frame was being published join
                    # this one: under load frames grow instead of falling behind.
                    ending = self._drain(inbox)
                    if ending is not None:
                        inbox.items.appendleft(ending)
                elif now >= deadline:
                    raise ChatError(
                        "timeout", f"The reply took longer than {settings.STREAM_TIMEOUT:g} s."
                    )
                elif now >= last_chunk + settings.STREAM_IDLE_TIMEOUT:
                    raise ChatError(
                        "timeout", f"The model sent nothing for {settings.STREAM_IDLE_TIMEOUT:g} s."
                    )
                elif not self.pending.due(now):
                    continue
                await self._flush()
        finally:
            producer.cancel()
            self.run.inbox = None
            await self._flush()  # what was received is shown before the terminal frame
            for call_id, step in list(self.steps.items()):
                if step["status"] == "running":  # stopped, failed or timed out meanwhile
                    await self._send_step({**step, "status": "cancelled"}, call_id)

    async def _produce(self, history: list[dict[str, str]], inbox: "_Inbox") -> None:
        """Read the provider's stream into the inbox; `_stream` decides when to flush."""
        try:
            max_tokens = self.run.hold.tokens if self.run.hold is not None else None
            async for delta in agent.stream_reply(
                history,
                chosen=self.run.provider,
                usage=self.usage,
                max_tokens=max_tokens,
                context=self.context,
                user_instructions=self.run.instructions,
            ):
                inbox.put(delta)
            inbox.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed over: `run_to_end` owns the error policy
            inbox.put(exc)

    async def _next(self, inbox: "_Inbox", timeout: float) -> Any:
        """The next delta (or end, or failure) from the provider, `_STOPPED`, or `_TICK`."""
        if not self.run.stopped and not inbox.items:
            await inbox.wait(timeout)
        if self.run.stopped:
            return _STOPPED
        return inbox.items.popleft() if inbox.items else _TICK

    def _drain(self, inbox: "_Inbox") -> Any:
        """Take every delta already waiting; return the end, failure or tool step met, if any."""
        now = time.monotonic()
        while inbox.items:
            item = inbox.items.popleft()
            if not isinstance(item, str):
                return item
            self._received(item, now)
        return None

    def _received(self, delta: str, now: float) -> bool:
        """Count the delta and buffer it; True when the buffer is full."""
        self.deltas += 1
        if self.first_token_ms is None:
            self.first_token_ms = int((now - self.started) * 1000)
        return self.pending.add(delta, now)

    async def _step(self, event: agent.ToolEvent, now: float) -> None:
        """A tool call began or ended: its step, sent as a `tool` frame."""
        step = self.steps.get(event.call_id)
        if event.output is None or step is None:
            self.step_started[event.call_id] = now
            step = frames.Step(
                call_id=event.call_id,
                name=event.name,
                arguments=tools.bounded(event.arguments, "arguments"),  # shown and saved
                status="running",
                offset=len(self.content),
            )
        if event.output is not None:
            failed = event.call_id in self.context.failures
            metrics.TOOL_CALLS.labels(step["name"], "error" if failed else "done").inc()
            step = {
                **step,
                "status": "error" if failed else "done",
                "output": event.output,  # as the model got it: bounded (tools.py)
                "elapsed_ms": int((now - self.step_started.get(event.call_id, now)) * 1000),
            }
        await self._send_step(step, event.call_id)

    async def _send_step(self, step: frames.Step, call_id: str) -> None:
        """The step as the reply's next frame: recorded with the reply, then published."""
        self.steps[call_id] = step
        self.seq += 1
        self.offsets.append(len(self.content))
        frame = frames.tool(message_id=self.reply_id, seq=self.seq, step=step)
        self.tools[self.seq] = frame
        text = json.dumps(frame)
        await self._emit(frame, text, "", tool=frame)

    async def _flush(self) -> None:
        """Send the buffer as the next token frame: recorded first, then published."""
        chunk = self.pending.flush()
        if not chunk:
            return
        self.seq += 1
        self.content += chunk
        self.offsets.append(len(self.content))
        frame = frames.token(message_id=self.reply_id, seq=self.seq, text=chunk)
        text = json.dumps(frame)
        await self._emit(frame, text, chunk)

    async def _emit(
        self, frame: dict[str, Any], text: str, chunk: str, tool: dict[str, Any] | None = None
    ) -> None:
        """Record the frame and hand it to every subscriber, this process's and the others'.

        In-process (one process), this process's subscribers get it first: they read
        snapshots from this stream's own state, so they need not wait for the record. With a
        shared store the record comes first: a client may only be shown what outlives this
        process, or a SIGKILL between the two would leave it holding text no record has (and
        the reply saved shorter than it saw). The other processes' subscribers get the frame
        with the record (published by the same script), or after it.
        """
        hub = broadcast.hub()
        metrics.frame_published(len(text))
        thread_id = self.run.thread_id
        announce = hub.announcement(thread_id, frame, text) if hub.remote is not None else ""
        if not self.store.shared:
            await hub.deliver(thread_id, frame, text)
        announced = await self._record(chunk, announce, tool=tool)
        if self.store.shared:
            await hub.deliver(thread_id, frame, text)
        if announce and not announced:
            # A wake-up only: a subscriber that misses it sees a gap and resyncs.
            await publish(thread_id, frame, text=text, local=False)

    async def _record(self, chunk: str, announce: str, tool: dict[str, Any] | None = None) -> bool:
        """Append the frame to the live record, or write the record whole if it fell behind
        (Redis restarted, or a write failed); an outage only defers this to the next frame.
        True when the append also published `announce` to the other processes."""
        appended = False
        try:
            if self.recorded:
                appended = self.recorded = await self.store.append(
                    thread_id=self.run.thread_id,
                    message_id=self.reply_id,
                    seq=self.seq,
                    text=chunk,
                    announce=announce,
                    tool=tool,
                )
            if not self.recorded:
                self.recorded = await self.store.restore(
                    thread_id=self.run.thread_id, reply=self.live_record()
                )
        except Exception as exc:
            self.recorded = False
            self._record_health.failed(exc)
        else:
            self._record_health.succeeded()
        return appended and bool(announce)

    async def _finish(self, outcome: Outcome) -> None:
        """The one final write, then the terminal frame; the live record is closed in between.

        Closing the record before publishing the terminal frame means a subscriber either saw
        the reply in flight (and, having joined the group first, gets the terminal frame) or
        reads the finished reply from the database: never a reply stuck `streaming` on screen.
        Each step is retried through an outage of up to OUTAGE_SECONDS; a final save that does
        not land by then goes on being retried in the background until it does.
        """
        elapsed_ms = int((time.monotonic() - self.started) * 1000)
        tokens = self.tokens_spent
        whole_tokens, whole_ms, whole_ttft = self._whole(tokens, elapsed_ms)
        self.terminal = terminal = self._terminal(outcome, whole_tokens, whole_ms, whole_ttft)
        final = functools.partial(
            services.reply_finish,
            reply_id=self.run.reply_id,
            content=self.content,
            status=outcome.status,
            error_code=outcome.code,
            error_message=outcome.message,
            token_count=whole_tokens,
            first_token_ms=whole_ttft,
            elapsed_ms=whole_ms,
            steps=list(self.steps.values()),
            truncated=terminal.get("truncated", False),
            frames=terminal["seq"],
        )
        saved = await outage.attempt(
            f"final save of reply {self.reply_id}", lambda: dbthread.off_loop(final)()
        )
        await outage.attempt(
            f"closing the live record of reply {self.reply_id}", self._close_record
        )
        await outage.attempt(
            f"terminal frame of reply {self.reply_id}",
            lambda: publish_strictly(self.run.thread_id, terminal),
        )
        if not saved:
            # Clients were told the outcome above; the live record holds the text meanwhile.
            late = outage.retrying(
                f"late final save of reply {self.reply_id}",
                lambda: dbthread.off_loop(final)(),
                seconds=math.inf,
            )
            tasks.background(late, name=f"save-{self.reply_id}")
        if self.run.new_title is not None:
            await _publish_thread(self.run, frames.thread(thread=self.run.new_title))
            self.titling = outcome.status == "complete" and not self.run.provider.offline_demo
        metrics.reply_finished(
            model=self.run.provider.id,
            status=outcome.status,
            code=outcome.code,
            first_token_ms=self.first_token_ms,
            elapsed_ms=elapsed_ms,
        )
        # The seed's stream logging, once per reply (LOG_FORMAT=json: these as fields).
        fields = {
            "event": "reply_end",
            "reply_id": self.reply_id,
            "thread_id": self.run.thread_id,
            "user_id": self.run.user_id,
            "model": self.run.provider.id,
            "status": outcome.status,
            "error": outcome.code or None,
            "chars": len(self.content),
            "output_tokens": tokens,
            "input_tokens": self.usage.input_tokens,
            "frames": terminal["seq"],
            "elapsed_ms": elapsed_ms,
            "first_token_ms": self.first_token_ms,
        }
        logger.info(
            "reply %s thread=%s status=%s chars=%d tokens=%d frames=%d elapsed_ms=%d ttft_ms=%s%s",
            self.reply_id,
            self.run.thread_id,
            outcome.status,
            len(self.content),
            tokens,
            terminal["seq"],
            elapsed_ms,
            self.first_token_ms,
            f" error={outcome.code}" if outcome.code else "",
            extra={"fields": fields},
        )

    async def _close_record(self) -> None:
        """Mark the live record done; one lost in an outage is written back whole, ended."""
        closed = self.recorded and await self.store.finish(
            thread_id=self.run.thread_id, message_id=self.reply_id, terminal=self.terminal
        )
        if not closed:
            await self.store.restore(thread_id=self.run.thread_id, reply=self.live_record())

    def _whole(self, tokens: int, elapsed_ms: int) -> tuple[int, int, int | None]:
        """The reply's tokens, writing time and time to first token: this run's, and for a
        continued reply those of the runs before it too (added up; the first token the first
        run's), so its `complete` frame and saved message describe the whole reply."""
        was = self.run.continued
        if was is None:
            return tokens, elapsed_ms, self.first_token_ms
        first = was.first_token_ms if was.first_token_ms is not None else self.first_token_ms
        return was.tokens + tokens, was.elapsed_ms + elapsed_ms, first

    def _terminal(
        self, outcome: Outcome, tokens: int, elapsed_ms: int, first_token_ms: int | None
    ) -> dict[str, Any]:
        seq = self.seq + 1
        if outcome.status in ("complete", "cancelled"):
            metrics = frames.metrics(
                tokens=tokens, elapsed_ms=elapsed_ms, first_token_ms=first_token_ms
            )
            return frames.complete(
                message_id=self.reply_id,
                seq=seq,
                status=outcome.status,
                metrics=metrics,
                truncated=outcome.status == "complete" and self.usage.truncated,
            )
        return frames.error(
            code=outcome.code,
            message=outcome.message,
            recoverable=outcome.recoverable,
            message_id=self.reply_id,
            seq=seq,
        )


class _Inbox:
    """What the provider sent, for the reply loop: one waiter at a time, no task per delta."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self._waiter: asyncio.Future | None = None

    def put(self, item: Any) -> None:
        self.items.append(item)
        self.wake()

    def wake(self) -> None:
        """End the current `wait()` (an item came, or the reply was stopped)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until an item comes, `wake()` is called, or `timeout` seconds pass."""
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_later(timeout, self.wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None


async def retitle(run: Run) -> None:
    """Best effort: replace a title cut from the first message by one the model writes, paid
    from the user's token budget like a reply (none left: the cut title stays)."""
    usage = agent.Usage()
    hold = None
    try:
        hold = await dbthread.off_loop(quota.reserve)(
            user_id=run.user_id, tokens=quota.TITLE_MAX_TOKENS
        )
        if hold is None:
            return
        title = await agent.make_title(
            run.first_message, chosen=run.provider, max_tokens=hold.tokens, usage=usage
        )
        thread = await dbthread.off_loop(services.thread_retitle)(
            thread_id=uuid.UUID(run.thread_id), title=title, expected=run.new_title["title"]
        )
    except Exception:
        logger.warning("thread %s: no model-made title", run.thread_id, exc_info=True)
        return
    finally:
        if hold is not None:
            spent = usage.output_tokens if usage.output_tokens is not None else hold.tokens
            settle = functools.partial(
                quota.settle, model=run.provider.id, input_tokens=usage.input_tokens, reply=False
            )
            await outage.attempt(
                f"settling the title's tokens of thread {run.thread_id}",
                lambda: dbthread.off_loop(settle)(hold, spent=spent),
            )
    if thread is not None:
        await _publish_thread(run, frames.thread(thread=frames.thread_object(thread)))


async def _publish_thread(run: Run, frame: dict[str, Any]) -> None:
    """A `thread` frame for the thread's sockets and for every other tab of its owner."""
    await publish(run.thread_id, frame)
    await publish(broadcast.user_topic(run.user_id), frame)
