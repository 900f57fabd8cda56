"""A reply's life, shared by every transport: start, stream, stop, and what a client reads.

Every transport maps what it was asked to an `Ask` (`ask_for` a client's `start`,
`regenerate` or `edit`; `ask_retry`) and hands it to `reply_begin`, the one way a reply
begins (`_begin`: admit, claim, commit, announce, spawn); the reply then runs as its own task
(`run.ReplyStream`), owned by this process's registry (ownership.py), so it outlives the
socket that asked for it.
`reply_stop` ends it from any process. Subscribers (WebSocket consumers, SSE views) read
`thread_snapshot` and `thread_replay`, which only read; `thread_reap` (ownership.py) is the
explicit step that settles what a dead process left behind.
"""

import contextlib
import functools
import logging
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError

from chat import (
    auth,
    catalog,
    dbthread,
    frames,
    inputs,
    limits,
    metrics,
    model_choice,
    outage,
    quota,
    selectors,
    services,
    tasks,
)
from chat.engine import live, ownership
from chat.engine.broadcast import publish
from chat.engine.ownership import reap_all, registry, thread_reap  # noqa: F401
from chat.engine.run import ContinuedFrom, ReplyStream, Run, retitle
from chat.errors import ChatError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    """What `reply_begin` did: began a reply, or found this `client_id` already sent; for a
    `continue` begun, where the reply stood (its frames carry on after it)."""

    reply_id: str
    duplicate: bool
    continued: ContinuedFrom | None = None


def _validate_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ChatError("bad_request", "`message` must be a non-empty string.")
    if (problem := inputs.text_problem(text)) is not None:
        raise ChatError("bad_request", problem)
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise ChatError(
            "too_large",
            f"The message is {len(text)} characters; the limit is {settings.MAX_MESSAGE_CHARS}.",
        )
    return text


def _uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ChatError("bad_request", f"`{name}` must be a UUID.") from None


def _client_uuid(client_id: Any) -> uuid.UUID:
    """The command's client_id, or a fresh one when the client sent none."""
    return uuid.uuid4() if client_id is None else _uuid(client_id, "client_id")


ASKING_COMMANDS = ("start", "regenerate", "edit", "continue")
# What the model is told after the partial reply it continues (a user turn comes last).
CONTINUE_PROMPT = "Continue exactly where you stopped."


def ask_for(command: dict[str, Any]) -> services.Ask:
    """What a client's `start`, `regenerate`, `edit` or `continue` command asks for,
    validated: every transport maps what it got to an `Ask` (the streaming POST's body is any
    of the four, a ChatKit `continue` action a `continue`) and hands it to
    `reply_begin`. A bad command raises the `ChatError` that answers it."""
    name = command.get("command")
    client_id = _client_uuid(command.get("client_id"))
    if name == "continue":
        continued = _uuid(command.get("message_id"), "message_id")
        return services.Ask(client_id=client_id, continued_id=continued)
    model = _model_id(command.get("model"))
    attached = _attachment_ids(command.get("attachments"))
    if name == "start":
        text = _validate_text(command.get("message"))
        return services.Ask(client_id=client_id, text=text, model=model, attachments=attached)
    if name == "regenerate":
        return services.Ask(client_id=client_id, regenerate=True, model=model)
    if name == "edit":
        return services.Ask(
            client_id=client_id,
            text=_validate_text(command.get("message")),
            edited_id=_uuid(command.get("message_id"), "message_id"),
            model=model,
            attachments=attached,
        )
    raise ChatError("bad_request", f"Unknown command {name!r}.")


def _attachment_ids(ids: Any) -> tuple[uuid.UUID, ...] | None:
    """The command's `attachments`, if it names any (whose they are is checked when the
    reply begins)."""
    if ids is None:
        return None
    if not isinstance(ids, list) or len(ids) > settings.MAX_ATTACHMENTS:
        raise ChatError(
            "bad_request",
            f"`attachments` must be a list of at most {settings.MAX_ATTACHMENTS} ids.",
        )
    return tuple(_uuid(value, "attachments") for value in ids)


def _model_id(model: Any) -> str | None:
    """The command's `model`, if it names one (whether the user may use it is checked when
    the reply begins)."""
    if model is None:
        return None
    if not isinstance(model, str) or not model or len(model) > 200:
        raise ChatError("bad_request", "`model` must be a model id from /api/models/.")
    return model


def ask_retry(*, message_id: Any) -> services.Ask:
    """Answer one of the thread's user messages anew, removing everything after it
    (ChatKit's "retry after item")."""
    return services.Ask(client_id=uuid.uuid4(), retry_after=_uuid(message_id, "message_id"))


async def reply_begin(
    *,
    user_id: int,
    thread_id: str,
    ask: services.Ask,
    time_zone: Any = None,
    credential: auth.Credential | None = None,
) -> StartResult:
    """Begin the reply that `ask` asks for, as a task of this process: the one way any reply
    begins, whatever the transport.

    The caller has checked that the thread is the user's (or `ask.new_thread_of` makes it,
    with the message: a refusal leaves no thread). Idempotent on the ask's `client_id`: a
    repeat starts nothing and reports `duplicate`. One reply at a time per thread (`busy`).
    With a `credential` (a socket's, opened long before), it is checked first, in the same
    trip to the database as the model's choice: `auth.CredentialLost` when it no longer holds.
    """
    try:
        return await _begin(user_id, str(thread_id), ask, time_zone_of(time_zone), credential)
    except ChatError as refused:
        metrics.refused(refused.code)
        raise


def time_zone_of(time_zone: Any) -> str:
    """The asker's IANA time zone (for tools that tell the time); UTC when none is given."""
    if time_zone is None:
        return "UTC"
    try:
        zoneinfo.ZoneInfo(str(time_zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ChatError("bad_request", "`time_zone` must be an IANA time zone.") from None
    return str(time_zone)


async def _begin(
    user_id: int,
    thread_id: str,
    ask: services.Ask,
    time_zone: str,
    credential: auth.Credential | None,
) -> StartResult:
    """The one way a reply begins: admit it (rate, replies in flight, tokens), claim the
    thread, commit, announce, spawn.

    What a start takes (a slot in flight, tokens, the claim) is given back by the exit stack
    if it fails or turns out to be a repeat; a reply that begins takes them over, and `_own`
    gives them back when it ends. Every step rides out a database or Redis outage of up to
    OUTAGE_SECONDS, so a message sent during a restart is answered once it is over.
    """
    reg = registry()
    chosen, instructions = await outage.db(
        "choosing the model",
        _choice,
        credential=credential,
        registry=reg,
        user_id=user_id,
        thread_id=thread_id,
        asked=ask.model,
        new_thread=ask.new_thread_of is not None,
    )
    await reg.open()
    reply_id = ask.continued_id or uuid.uuid4()
    async with contextlib.AsyncExitStack() as undo:
        hold = await _admit(undo, user_id, reply_id)
        claim = await undo.enter_async_context(reg.claim(thread_id, reply_id, chosen.id))
        # A retried send is told apart only when something refuses it (the claim: its reply
        # still runs; the commit: its client_id is taken), so a first send costs no lookup.
        if not claim.taken:
            if (sent := await _existing_send(thread_id, ask.client_id)) is not None:
                return StartResult(reply_id=str(sent.id), duplicate=True)
            raise ChatError("busy", "A reply is already being written in this thread.")
        try:
            begun = await _commit(thread_id, reply_id, chosen, ask, hold)
        except (IntegrityError, services.AlreadySent):  # a retried command
            sent = await _existing_send(thread_id, ask.client_id)
            return StartResult(reply_id=str(sent.id) if sent else "", duplicate=True)
        run = Run(
            thread_id=thread_id,
            reply_id=begun.reply.id,
            provider=chosen,
            owner=reg.channel,
            user_id=user_id,
            time_zone=time_zone,
            hold=hold,
            new_title=frames.thread_object(begun.thread) if begun.thread else None,
            first_message=begun.user_message.content if begun.thread else "",
            history=begun.history,
            history_left_out=begun.history_left_out,
            instructions=instructions,
            continued=_continued_from(begun),
            # Told after the reply's `start`: a tab that sees the thread's new active leaf
            # already shows it, and never takes the change for another tab's branch switch.
            model_changed=(
                frames.thread_object(begun.model_changed) if begun.model_changed else None
            ),
        )
        if run.continued is not None:
            await _record_continued(run)
        reg.runs[thread_id] = run
        claim.taken_over()
        undo.pop_all()  # the reply holds its slot and tokens now
    # Published after the commit above: no subscriber sees a message a rollback removed. A
    # message goes after its parent, so a new branch (an edit's message, a regenerated
    # reply) takes the place of what a client shows there.
    placed = begun.user_message or (None if begun.continued else begun.reply)
    if placed is not None:
        await publish(thread_id, frames.message(message=frames.message_object(placed)))
    run.task = tasks.background(_own(run), name=f"reply-{begun.reply.id}")
    metrics.reply_started(chosen.id)
    return StartResult(reply_id=str(begun.reply.id), duplicate=False, continued=run.continued)


def _choice(
    *, credential: auth.Credential | None, registry: ownership.Registry, **choice: Any
) -> tuple[catalog.Model, str]:
    """A start's reads before it takes anything, in one trip to the database thread, in the
    order of their refusals: the socket's credential (`auth.CredentialLost`), a draining
    server (`interrupted`), then the model and the user's instructions (`reply_choice`)."""
    if credential is not None and not credential.still_valid():
        raise auth.CredentialLost
    if registry.draining:
        raise ChatError("interrupted", "This server is restarting; send your message again.")
    return model_choice.reply_choice(**choice)


def _continued_from(begun: services.Begun) -> ContinuedFrom | None:
    """Where a continued reply carries on: its saved text, steps and last frame's `seq`."""
    if not begun.continued:
        return None
    reply = begun.reply
    return ContinuedFrom(
        content=reply.content,
        seq=max(reply.frames, 1),
        steps=list(reply.steps or []),
        tokens=reply.token_count or 0,
        elapsed_ms=reply.elapsed_ms or 0,
        first_token_ms=reply.first_token_ms,
    )


async def _record_continued(run: Run) -> None:
    """The claim's live record made the continued reply's: its whole text so far in frame
    `seq` (its last), so `ready.active` and replays carry on from there."""
    was = run.continued
    offsets = [0] * was.seq + [len(was.content)]
    record = live.LiveReply(
        message_id=str(run.reply_id),
        owner=run.owner,
        seq=was.seq,
        content=was.content,
        model=run.provider.id,
        offsets=offsets,
    )
    await outage.attempt(
        f"recording continued reply {run.reply_id}",
        lambda: live.store().restore(thread_id=run.thread_id, reply=record),
    )


async def _admit(undo: contextlib.AsyncExitStack, user_id: int, reply_id: uuid.UUID) -> quota.Hold:
    """Count the reply against the user's limits: replies a minute, replies in flight, and
    tokens (the hold, which is its `max_tokens`). What it takes, `undo` gives back."""
    if not await outage.retrying(
        "counting the reply rate", lambda: limits.reply_allowed(user_id=user_id)
    ):
        raise ChatError(
            "rate_limited",
            f"At most {settings.REPLIES_PER_MINUTE} replies a minute; try again shortly.",
        )
    if not await outage.retrying(
        "counting replies in flight",
        lambda: limits.in_flight_begin(user_id=user_id, reply_id=str(reply_id)),
    ):
        raise ChatError(
            "rate_limited",
            f"At most {settings.MAX_REPLIES_IN_FLIGHT} replies at once; wait for one to end.",
        )
    undo.push_async_callback(_let_go, user_id, reply_id, None, spent=0)
    tokens = settings.REPLY_MAX_TOKENS
    try:  # with no budget set, no trip to the database
        hold = quota.unbudgeted(user_id=user_id, tokens=tokens) or await outage.db(
            "holding the reply's tokens", quota.reply_hold, user_id=user_id, tokens=tokens
        )
    except quota.Spent as spent:
        if spent.budget == "input":
            budget = f"Today's budget of {settings.DAILY_INPUT_BUDGET} input tokens"
        else:
            budget = f"Today's budget of {settings.DAILY_TOKEN_BUDGET} tokens"
        raise ChatError(
            "quota_exceeded", f"{budget} is spent; it renews at midnight UTC."
        ) from None
    undo.push_async_callback(_settle_tokens, hold, reply_id, spent=0)
    return hold


async def _existing_send(thread_id: str, client_id: uuid.UUID) -> Any:
    """The reply that answered this `client_id` already, if any (through an outage)."""
    return await outage.db(
        f"looking up send {client_id}",
        selectors.reply_to_send,
        thread_id=thread_id,
        client_id=client_id,
    )


async def _let_go(
    user_id: int,
    reply_id: uuid.UUID,
    hold: quota.Hold | None,
    *,
    spent: int,
    model: str = "",
    input_tokens: int = 0,
    outcome: quota.Outcome | None = None,
) -> None:
    """The reply is no longer in flight: count it out, and settle its tokens."""
    await outage.attempt(
        f"counting reply {reply_id} out of the replies in flight",
        lambda: limits.in_flight_end(user_id=user_id, reply_id=str(reply_id)),
    )
    if hold is not None:
        await _settle_tokens(
            hold, reply_id, spent=spent, model=model, input_tokens=input_tokens, outcome=outcome
        )


async def _settle_tokens(
    hold: quota.Hold,
    reply_id: uuid.UUID,
    *,
    spent: int,
    model: str = "",
    input_tokens: int = 0,
    outcome: quota.Outcome | None = None,
) -> None:
    settle = functools.partial(
        quota.settle, model=model, input_tokens=input_tokens, outcome=outcome
    )
    await outage.attempt(
        f"settling the tokens of reply {reply_id}",
        lambda: dbthread.off_loop(settle)(hold, spent=spent),
    )


async def _commit(
    thread_id: str,
    reply_id: uuid.UUID,
    chosen: catalog.Model,
    ask: services.Ask,
    hold: quota.Hold,
) -> services.Begun:
    """The begin's one transaction, and the agent's input (the history) read in it: one trip
    to the database per reply start (the user's own instructions came with the model's
    choice), shared with the starts queued beside it (`dbthread.together`: group commit, each
    start in its own savepoint, so one refused changes nothing of the others).
    Retried through an outage; a connection that dropped after the commit but before its
    answer must not make a second reply, so a retry first looks for what the lost attempt
    committed."""
    attempts = 0

    def attempt() -> services.Begun:
        nonlocal attempts
        attempts += 1
        begun = services.reply_begun(reply_id=reply_id) if attempts > 1 else None
        if ask.continued_id is not None and begun is not None:
            # The lost attempt committed only if it set the reply streaming again.
            streaming = begun.reply.status == begun.reply.Status.STREAMING
            begun = services.Begun(reply=begun.reply, continued=True) if streaming else None
        if begun is None:
            begun = services.reply_open(
                ask=ask,
                thread_id=uuid.UUID(thread_id),
                reply_id=reply_id,
                model=chosen.id,
                held_tokens=hold.tokens if hold.counted else 0,
                vision=chosen.vision,
            )
        max_chars = chosen.history_chars(hold.tokens)
        # A thread's first message is its whole history: two reads fewer for every new thread.
        begun.history, begun.history_left_out = selectors.opening_history(
            None if begun.continued else begun.user_message, max_chars=max_chars
        ) or selectors.thread_history(
            thread_id=uuid.UUID(thread_id),
            # The path the reply follows, never another branch; a continued reply is in its
            # own input (the text the model goes on from).
            leaf_id=begun.reply.id if begun.continued else begun.reply.parent_id,
            max_chars=max_chars,
            vision=chosen.vision,
        )
        if begun.continued:
            begun.history.append({"role": "user", "content": CONTINUE_PROMPT})
        if begun.history_left_out:
            services.reply_history_cut(reply_id=reply_id, left_out=begun.history_left_out)
        return begun

    return await outage.retrying(f"committing reply {reply_id}", lambda: dbthread.together(attempt))


async def _own(run: Run) -> None:
    """Run the reply as this process's task; it outlives the socket that asked for it."""
    stream = ReplyStream(run)
    try:
        await stream.run_to_end()
    except Exception:
        logger.exception("reply %s: its task failed", run.reply_id)
    finally:
        reg = ownership.registry()
        if reg.runs.get(run.thread_id) is run:  # a next reply may already be registered
            del reg.runs[run.thread_id]
        await _let_go(
            run.user_id,
            run.reply_id,
            run.hold,
            spent=stream.tokens_spent,
            model=run.provider.id,
            input_tokens=stream.usage.input_tokens,
            outcome=quota.Outcome(
                failed=stream.terminal is not None and stream.terminal["type"] == "error",
                first_token_ms=stream.first_token_ms,
            ),
        )
        if stream.titling:
            tasks.background(retitle(run), name=f"title-{run.reply_id}")
        metrics.tokens(
            model=run.provider.id,
            input_tokens=stream.usage.input_tokens,
            output_tokens=stream.tokens_spent,
        )
        metrics.reply_gone()


async def reply_stop(*, thread_id: str) -> bool:
    """Stop the thread's reply, whichever process runs it. False if none is running.

    A reply whose process died is marked `interrupted` on the spot: Stop always ends it.
    """
    thread_id = str(thread_id)
    if ownership.registry().stop_local(thread_id):
        return True
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    if reply is None:
        return False
    if not await ownership.owner_alive(reply):
        await ownership.interrupt(thread_id, reply, reply_id=uuid.UUID(reply.message_id))
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
    await ownership.interrupt(str(thread_id), None, reply_id=reply_id)
    return False


def _snapshot_frame(reply: live.LiveReply) -> frames.Snapshot:
    snapshot: frames.Snapshot = {
        "message_id": reply.message_id,
        "seq": reply.seq,
        "content": reply.content,
    }
    if reply.tools:
        snapshot["steps"] = reply.steps()  # type: ignore[typeddict-item]
    return snapshot


async def thread_heartbeat(*, thread_id: str) -> frames.Snapshot | None:
    """A heartbeat's look at the thread: its reply in flight, after ending one whose owner
    died (`reap_orphan`, which reads the live record once for both)."""
    reply = await ownership.reap_orphan(thread_id=str(thread_id))
    return _snapshot_frame(reply) if reply is not None else None


async def thread_snapshot(*, thread_id: str) -> frames.Snapshot | None:
    """The thread's reply in flight as `ready.active`, or None. Only reads: a reply whose
    owner died is not in flight, and `thread_reap` is what settles it."""
    thread_id = str(thread_id)
    if (here := registry().running_here(thread_id)) is not None:
        return _snapshot_frame(here)
    reply = await live.snapshot(live.store(), thread_id=thread_id)
    if reply is None or not await ownership.owner_alive(reply):
        return None
    return _snapshot_frame(reply)


async def thread_replay(
    *, thread_id: str, message_id: str | None, after_seq: int
) -> list[dict[str, Any]] | None:
    """The frames of the thread's latest reply after `after_seq`, exactly as they were sent.

    None when that reply is no longer recorded (the caller starts over from `ready`). With no
    `message_id`, the latest reply is meant.
    """
    here = ownership.registry().running_here(str(thread_id))
    reply = here or await live.store().record(thread_id=str(thread_id))
    if reply is None or (message_id is not None and reply.message_id != message_id):
        return None
    if after_seq > reply.seq + (1 if reply.done else 0):
        return None
    replayed: list[dict[str, Any]] = []
    if after_seq < 0:
        replayed.append(frames.start(message_id=reply.message_id, model=reply.model))
    texts = dict(reply.frame_texts(after_seq))
    for seq in range(max(after_seq + 1, 1), reply.seq + 1):
        if seq in reply.tools:
            replayed.append(reply.tools[seq])
        else:
            replayed.append(frames.token(message_id=reply.message_id, seq=seq, text=texts[seq]))
    if reply.terminal is not None and reply.terminal["seq"] > after_seq:
        replayed.append(reply.terminal)
    return replayed


async def reply_frames(*, thread_id: str, reply_id: str) -> list[dict[str, Any]]:
    """A reply's frames so far, as they were sent: from the live record, or rebuilt from the
    saved message once that is gone (a retried streaming send replays them)."""
    replayed = await thread_replay(thread_id=thread_id, message_id=reply_id, after_seq=-1)
    if replayed is not None:
        return replayed
    reply = await outage.db(f"reading reply {reply_id}", selectors.message_get, message_id=reply_id)
    return frames.of_saved_reply(frames.message_object(reply)) if reply is not None else []
