"""The wire protocol, defined once for the WebSocket, SSE and tests (docs/protocol.md).

Every server frame is a TypedDict whose `type` is a `Literal`; `Frame` is their union, and
`Command` the union of what a client sends. docs/protocol.md's field tables and the protocol
test's JSON Schema are derived from these classes (chat/frame_schema.py): a docstring is the
doc's text for its frame or object, an `Annotated` note its field's meaning. Change a field
here and the doc check (`python -m scripts.protocol_doc`) and the test follow.

Every server frame has `type` and `ts` (epoch ms). Frames of a reply carry `message_id` and
`seq`: 0 for `start`, then +1 per frame of that reply, so a client can detect a gap.

"""

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple, NotRequired, TypedDict

if TYPE_CHECKING:  # the data model is not imported at run time: frames.py needs no Django
    from chat.models import Message, Thread

# --- codes and statuses --------------------------------------------------------------------

ErrorCode = Literal[
    "bad_request",
    "too_large",
    "busy",
    "rate_limited",
    "quota_exceeded",
    "provider_error",
    "timeout",
    "interrupted",
    "internal",
]


class ErrorInfo(NamedTuple):
    """What an error code means, and the `recoverable` it comes with (None: it depends)."""

    recoverable: bool | None
    meaning: str


ERRORS: Final[dict[ErrorCode, ErrorInfo]] = {
    "bad_request": ErrorInfo(
        False,
        "The command or body is malformed: not JSON, an unknown command, a missing or empty "
        "`message`, a `client_id` or `message_id` that is no UUID, an `edit` of a message that "
        "is not a user message of the thread's active path, a `regenerate` with no finished "
        "reply at the path's end, a `continue` of a message that is not the thread's last "
        "reply, finished and truncated; an `active_leaf` that is no message of the thread.",
    ),
    "too_large": ErrorInfo(
        False,
        "The message is longer than the server's limit, or the frame is far past any valid "
        "command.",
    ),
    "busy": ErrorInfo(
        True,
        "A reply is already running on this thread; wait for its end. Also a branch switch "
        "while a reply runs.",
    ),
    "rate_limited": ErrorInfo(
        True,
        "Too many replies a minute, too many at once, or too many commands a second on one "
        "socket (those are dropped). On the 429 that refuses one event stream too many, "
        "`recoverable` is false: close one first.",
    ),
    "quota_exceeded": ErrorInfo(
        False, "The user's daily token budget is spent; it renews at midnight UTC."
    ),
    "provider_error": ErrorInfo(
        None,
        "The model provider failed. Recoverable when a retry may help (HTTP 5xx, 408, 409, "
        "429, unreachable); not when the provider is misconfigured or refused the request.",
    ),
    "timeout": ErrorInfo(
        True,
        "The provider stayed silent too long, or the reply took longer than the server "
        "allows; the text shown is kept.",
    ),
    "interrupted": ErrorInfo(
        True,
        "The process running the reply died or shut down; the text its clients were shown is "
        "kept. Also a start refused while the server restarts.",
    ),
    "internal": ErrorInfo(True, "The server failed; the command or stream may be tried again."),
}

CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_NOT_FOUND: Final = 4404
CLOSE_TOO_MANY: Final = 4429
CLOSE_TOO_SLOW: Final = 1013

CLOSE_CODES: Final[dict[int, str]] = {
    CLOSE_UNAUTHENTICATED: "Not logged in (no session, or a bad client secret), or the session "
    "or secret that opened the socket ended: logout, password change, deactivation, expiry. "
    "Log in again; reconnecting as is cannot help.",
    CLOSE_NOT_FOUND: "Not the user's thread, no such thread, or no such socket path.",
    CLOSE_TOO_MANY: "The user has too many sockets and event streams open; close one, then "
    "reconnect.",
    CLOSE_TOO_SLOW: "The client left too much unread; reconnect, and `ready` resumes the reply.",
}

Role = Literal["user", "assistant", "system"]
MessageStatus = Literal["pending", "streaming", "complete", "cancelled", "error", "interrupted"]
# How a reply ended: `complete` and `cancelled` end with a `complete` frame, the others with an
# `error` frame that carries the reply's `message_id`.
EndStatus = Literal["complete", "cancelled", "error", "interrupted"]

# --- shared fields -------------------------------------------------------------------------

Ts = Annotated[int, "Server time, epoch milliseconds."]
ReplyId = Annotated[str, "The reply's message id (a UUID)."]
Seq = Annotated[int, "This frame's number in its reply: `start` is 0, each next frame +1."]
Uuid = Annotated[str, "A UUID."]
TimeZone = Annotated[
    str,
    "The user's IANA time zone (e.g. Europe/Paris), for the agent's clock tool. Optional: UTC.",
]
ModelId = Annotated[
    str,
    "A model id from `GET /api/models/`: the thread's model from this reply on. Optional: "
    "the thread's model.",
]
AttachmentIds = Annotated[
    list[str],
    "Ids from `POST /api/attachments/`: the user's own uploads, not sent before. On `edit`, "
    "left out: the edited message's files stay; given: they replace them.",
]
ClientId = Annotated[
    str,
    "A UUID the client makes per send: sent again (a retry after a reconnect), it starts "
    "nothing new. Optional; without it every command starts a reply.",
]

# --- objects inside frames and API answers -------------------------------------------------


class Metrics(TypedDict):
    """What a finished reply measured."""

    totalTokens: Annotated[int, "Output tokens (the provider's count, else one per delta)."]
    elapsedSeconds: Annotated[float, "From the start to the end of the reply."]
    throughputTokensPerSec: float
    timeToFirstTokenMs: Annotated[int | None, "Null when no token came."]


class ErrorDetail(TypedDict):
    """Why a saved reply ended in error."""

    code: ErrorCode
    message: str


StepStatus = Literal["running", "done", "error", "cancelled"]


class Step(TypedDict):
    """A tool the agent called while writing a reply: what it asked, and what came back."""

    call_id: Annotated[str, "The call's id, as the model named it; one step per call."]
    name: Annotated[str, "The tool."]
    arguments: Annotated[str, "The call's arguments, as JSON text."]
    status: Annotated[
        StepStatus,
        "`running` until it ends: `done`, `error` (it failed or timed out; the model was told), "
        "or `cancelled` (the reply was stopped meanwhile).",
    ]
    output: NotRequired[Annotated[str, "What the model was given back (ended steps)."]]
    offset: Annotated[int, "How much of the reply's text came before the call."]
    elapsed_ms: NotRequired[Annotated[int, "How long the tool ran (ended steps)."]]


AttachmentKind = Literal["image", "text", "document"]


class AttachmentObject(TypedDict):
    """A file sent with a user message (`POST /api/attachments/` made it)."""

    id: Uuid
    name: Annotated[str, "The file's name as uploaded (its last path part, printable)."]
    mime_type: Annotated[str, "Its type, from its bytes (never the name or the header)."]
    size: Annotated[int, "Bytes stored (an image as re-encoded: no metadata, scaled)."]
    kind: Annotated[AttachmentKind, "`image`, `text` or `document` (a PDF)."]
    url: Annotated[str, "`GET` it for the file: its owner only."]


FeedbackRating = Literal["up", "down"]


class FeedbackObject(TypedDict):
    """The owner's rating of a reply (`PUT /api/messages/<id>/feedback/`)."""

    rating: FeedbackRating
    tags: Annotated[list[str], "Short labels (the page offers the operator's FEEDBACK_TAGS)."]
    comment: Annotated[str, "Empty when none."]
    updated_at: Annotated[str, "ISO 8601."]


class Siblings(TypedDict):
    """The alternatives at a message's place in its thread's tree (an edit or a regenerate
    adds one), itself included, oldest first."""

    index: Annotated[int, "Its own place among them, from 0."]
    count: Annotated[int, "How many there are (1: none but itself)."]
    ids: Annotated[list[str], "Their ids, oldest first: `PATCH` one as `active_leaf` to show it."]


class MessageObject(TypedDict):
    """A saved message, as `message` frames and the HTTP API carry it."""

    id: Uuid
    parent_id: Annotated[
        str | None, "The message it follows in the thread's tree; null for the first."
    ]
    siblings: Siblings
    role: Role
    content: Annotated[str, "The text; a reply's text so far while it streams."]
    status: Annotated[MessageStatus, "A user message is `complete`."]
    client_id: Annotated[
        str | None,
        "The `client_id` of the command that sent it (a user message or a regenerated reply).",
    ]
    created_at: Annotated[str, "ISO 8601."]
    model: NotRequired[Annotated[str, "Replies only: the model that wrote it."]]
    metrics: NotRequired[Annotated[Metrics | None, "Replies only: null until it has ended."]]
    error: NotRequired[Annotated[ErrorDetail | None, "Replies only: null unless it failed."]]
    steps: NotRequired[Annotated[list[Step], "Replies only: its tool steps, in call order."]]
    attachments: NotRequired[
        Annotated[list[AttachmentObject], "User messages only: the files sent with it."]
    ]
    feedback: NotRequired[
        Annotated[FeedbackObject | None, "Replies only: the owner's rating, or null."]
    ]
    history_left_out: NotRequired[
        Annotated[
            int,
            "Replies only: earlier messages of the thread that were not sent to the model, "
            "its context window being full (0: the whole thread was).",
        ]
    ]
    truncated: NotRequired[
        Annotated[
            bool,
            "Replies only: the provider ended it at its token limit; `continue` extends it.",
        ]
    ]


class ThreadObject(TypedDict):
    """A thread, as `thread` frames and the HTTP API carry it."""

    id: Uuid
    title: Annotated[str, "Empty until the first reply titles it."]
    model: Annotated[str, "The model id its next reply uses (`GET /api/models/`)."]
    pinned: Annotated[bool, "Pinned by its owner: the page lists it first, under Pinned."]
    active_leaf: Annotated[
        str | None,
        "The last message of the branch it shows (null while it has none); `PATCH` any "
        "message of the thread here to switch branch.",
    ]
    created_at: Annotated[str, "ISO 8601."]
    updated_at: Annotated[str, "ISO 8601."]


class Snapshot(TypedDict):
    """A reply in flight: its text up to and including frame `seq`."""

    message_id: ReplyId
    seq: Annotated[int, "The last frame the text includes."]
    content: Annotated[str, "The text of frames 1 to `seq`."]
    steps: NotRequired[
        Annotated[list[Step], "Its tool steps as of frame `seq` (left out when none)."]
    ]


class Position(TypedDict):
    """Where a reply in flight stands, without its text."""

    message_id: ReplyId
    seq: Annotated[int, "Its last frame sent."]


class ShareObject(TypedDict):
    """A read-only link to a snapshot of a thread (`POST /api/threads/<id>/shares/`): its
    owner's view of it."""

    token: Annotated[str, "The link's secret (256 random bits): `/s/<token>/` is the page."]
    url: Annotated[str, "The page's address, for anyone with it."]
    up_to: Annotated[str, "The id of the last message the snapshot holds."]
    created_at: Annotated[str, "ISO 8601: when the snapshot was copied."]
    expires_at: Annotated[str | None, "ISO 8601; null: until revoked or the thread is deleted."]


class SharedStep(TypedDict):
    """A tool step as a share shows it: what ran and how it ended, never its arguments or
    output (a tool may have read the owner's other threads)."""

    name: Annotated[str, "The tool."]
    status: StepStatus


class SharedAttachment(TypedDict):
    """A file of a shared message, served to the share's readers only."""

    name: Annotated[str, "The file's name as uploaded."]
    mime_type: Annotated[str, "Its type, from its bytes."]
    size: Annotated[int, "Bytes."]
    kind: Annotated[AttachmentKind, "`image`, `text` or `document` (a PDF)."]
    url: Annotated[str, "`GET` it for the file (`/api/shares/<token>/attachments/<id>`)."]


class SharedMessage(TypedDict):
    """A message of a share's snapshot: no id, status, model, metrics or feedback."""

    role: Role
    content: Annotated[str, "The text as it was when shared (a reply's is markdown)."]
    created_at: Annotated[str, "ISO 8601."]
    steps: NotRequired[Annotated[list[SharedStep], "Replies with tool steps: them, in call order."]]
    attachments: NotRequired[Annotated[list[SharedAttachment], "User messages with files: them."]]


class SharedThread(TypedDict):
    """What anyone with a share's link reads (`GET /api/shares/<token>/`): the snapshot as it
    was copied, and nothing that says whose it is."""

    title: Annotated[str, "The thread's title when it was shared."]
    created_at: Annotated[str, "ISO 8601: when it was shared."]
    messages: Annotated[list[SharedMessage], "The thread's shown path up to `up_to`, oldest first."]


# Objects only the HTTP API carries (no frame holds them): the docs and the schema list them
# after the frames' own.
API_OBJECTS: Final = (ShareObject, SharedThread)


# --- server frames -------------------------------------------------------------------------


class ReadyFrame(TypedDict):
    """The first frame on a socket, and the answer to `resync`; also the answer to a `stop`
    with nothing running and to a `client_id` sent again."""

    type: Literal["ready"]
    ts: Ts
    thread_id: Annotated[
        str | None, "The thread's id; null on the user's socket (`/ws/user/`), which has none."
    ]
    active: Annotated[
        Snapshot | None,
        "The reply in flight, or null: show its `content`, then apply only frames of that "
        "reply with a larger `seq`.",
    ]


class MessageFrame(TypedDict):
    """A message was saved (every socket of the thread gets it, the sender's too): a user
    message, or, for a `regenerate` (or a ChatKit retry), the new reply itself, `streaming`
    and empty, before its `start`. The message goes right after its `parent_id`: whatever a
    client shows after that parent is another branch now (an edit, a regenerate), and leaves
    the screen; its `siblings` count the versions at its place."""

    type: Literal["message"]
    ts: Ts
    message: MessageObject


class StartFrame(TypedDict):
    """A reply began."""

    type: Literal["start"]
    ts: Ts
    message_id: ReplyId
    seq: Literal[0]
    model: Annotated[str, "The model writing the reply."]
    history_left_out: NotRequired[
        Annotated[
            int,
            "Earlier messages of the thread not sent to the model (its context window was "
            "full); left out when none, and when the frame is replayed.",
        ]
    ]


class TokenFrame(TypedDict):
    """A chunk of reply text: one or more model tokens, appended to the reply."""

    type: Literal["token"]
    ts: Ts
    message_id: ReplyId
    seq: Seq
    token: Annotated[str, "The text to append."]


class ToolFrame(TypedDict):
    """A tool step of a reply: sent when the agent calls the tool, and again when it ends
    (the same `call_id`, a later `seq`). The newest frame of a step replaces the step."""

    type: Literal["tool"]
    ts: Ts
    message_id: ReplyId
    seq: Seq
    call_id: Annotated[str, "The step's id."]
    name: Annotated[str, "The tool."]
    arguments: Annotated[str, "The call's arguments, as JSON text."]
    status: StepStatus
    output: NotRequired[Annotated[str, "What the model was given back (ended steps)."]]
    offset: Annotated[int, "How much of the reply's text came before the call."]
    elapsed_ms: NotRequired[Annotated[int, "How long the tool ran (ended steps)."]]


class CompleteFrame(TypedDict):
    """A reply ended normally, or by `stop`; it is saved with this status."""

    type: Literal["complete"]
    ts: Ts
    message_id: ReplyId
    seq: Seq
    status: Literal["complete", "cancelled"]
    metrics: Metrics
    truncated: NotRequired[
        Annotated[
            Literal[True],
            "The provider ended the reply at its token limit (left out otherwise): `continue` "
            "extends it.",
        ]
    ]


class ErrorFrame(TypedDict):
    """An error. With `message_id` it ends that reply, like `complete` (the text shown is kept
    and saved); without, it answers a command, and the socket stays open."""

    type: Literal["error"]
    ts: Ts
    code: Annotated[ErrorCode, "See Errors."]
    message: Annotated[str, "For people, in English."]
    recoverable: Annotated[bool, "Whether trying again may help."]
    message_id: NotRequired[Annotated[str, "The reply this error ended (with `seq`)."]]
    seq: NotRequired[Seq]


class HeartbeatFrame(TypedDict):
    """The answer to `heartbeat`, with where the thread's reply stands."""

    type: Literal["heartbeat"]
    ts: Ts
    active: NotRequired[
        Annotated[
            Position | None,
            "The reply in flight, or null when none runs. A client still showing a reply as "
            "streaming that the server has finished lost frames: it sends `resync`. Left out "
            "when the server cannot tell (its store is restarting).",
        ]
    ]


class ThreadFrame(TypedDict):
    """A thread was made or changed: its title (cut from the first message, then, with a real
    model, one the model wrote; or a rename), its model, or its branch (a switch: `PATCH
    active_leaf`). Sent on the thread's own socket, and on every other socket of its owner, so
    each tab's thread list follows. A client showing the thread whose last message is not the
    thread's `active_leaf`, with no reply running, reads the thread's messages again (`GET
    /api/threads/<id>/messages/`): another tab switched branch."""

    type: Literal["thread"]
    ts: Ts
    thread: ThreadObject


class ThreadDeletedFrame(TypedDict):
    """A thread of the user's was deleted (in another tab, say): sent on its own socket and on
    every other socket of its owner."""

    type: Literal["thread_deleted"]
    ts: Ts
    thread_id: Annotated[str, "The deleted thread's id."]


class FeedbackFrame(TypedDict):
    """The owner rated a reply, changed the rating or removed it (in any tab, or ChatKit):
    sent on the thread's sockets."""

    type: Literal["feedback"]
    ts: Ts
    message_id: Annotated[str, "The reply rated."]
    feedback: Annotated[FeedbackObject | None, "Null: the rating was removed."]


Frame = (
    ReadyFrame
    | MessageFrame
    | StartFrame
    | TokenFrame
    | ToolFrame
    | CompleteFrame
    | ErrorFrame
    | HeartbeatFrame
    | ThreadFrame
    | ThreadDeletedFrame
    | FeedbackFrame
)

# --- client commands -----------------------------------------------------------------------


class StartCommand(TypedDict):
    """Send a message and start the reply to it."""

    command: Literal["start"]
    message: Annotated[str, "Not empty; at most the server's `MAX_MESSAGE_CHARS`."]
    client_id: NotRequired[ClientId]
    time_zone: NotRequired[TimeZone]
    model: NotRequired[ModelId]
    attachments: NotRequired[AttachmentIds]


class StopCommand(TypedDict):
    """Stop the thread's running reply, from any socket, whichever process runs it. Closing a
    socket never stops a reply."""

    command: Literal["stop"]


class HeartbeatCommand(TypedDict):
    """Ask for a `heartbeat` frame: a socket that gets no answer is dead. The seed's client
    sends `{"type": "heartbeat"}` instead, and gets the same answer."""

    command: Literal["heartbeat"]


class ResyncCommand(TypedDict):
    """Ask for a fresh `ready` (after a `seq` gap, or a heartbeat that disagrees)."""

    command: Literal["resync"]


class RegenerateCommand(TypedDict):
    """A new answer to the message the thread's last finished reply (its active leaf)
    answers: a new branch beside that reply, which is kept (its `siblings` list both)."""

    command: Literal["regenerate"]
    client_id: NotRequired[ClientId]
    time_zone: NotRequired[TimeZone]
    model: NotRequired[ModelId]


class EditCommand(TypedDict):
    """A new version of a user message on the thread's active path, answered: a new branch
    beside the old version, which is kept with everything after it."""

    command: Literal["edit"]
    message_id: Annotated[str, "A user message of the thread's active path."]
    message: Annotated[str, "The new text."]
    client_id: NotRequired[ClientId]
    time_zone: NotRequired[TimeZone]
    model: NotRequired[ModelId]
    attachments: NotRequired[AttachmentIds]


class ContinueCommand(TypedDict):
    """Extend the thread's last reply, which the token limit cut (`truncated`): the same
    message, its text grows, its frames carry on its `seq` after its last frame (no `start`)."""

    command: Literal["continue"]
    message_id: Annotated[
        str, "The thread's active leaf (its last message shown): a finished, truncated reply."
    ]
    client_id: NotRequired[ClientId]


Command = (
    StartCommand
    | StopCommand
    | HeartbeatCommand
    | ResyncCommand
    | RegenerateCommand
    | EditCommand
    | ContinueCommand
)

# --- builders ------------------------------------------------------------------------------


def now_ms() -> int:
    """Server time as epoch milliseconds."""
    return int(time.time() * 1000)


def metrics(*, tokens: int, elapsed_ms: int, first_token_ms: int | None) -> Metrics:
    """A reply's metrics from what was counted and timed."""
    seconds = elapsed_ms / 1000
    return {
        "totalTokens": tokens,
        "elapsedSeconds": round(seconds, 3),
        "throughputTokensPerSec": round(tokens / seconds, 2) if seconds > 0 else 0.0,
        "timeToFirstTokenMs": first_token_ms,
    }


def message_object(message: "Message") -> MessageObject:
    """A saved message as frames and the API show it (the DRF serializer uses this too)."""
    shaped: MessageObject = {
        "id": str(message.id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "client_id": str(message.client_id) if message.client_id else None,
        "created_at": message.created_at.isoformat(),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        # Set by whoever read it (selectors.with_siblings, the begin): never a query here.
        "siblings": getattr(message, "siblings", None)
        or {"index": 0, "count": 1, "ids": [str(message.id)]},
    }
    if message.role == "user":
        shaped["attachments"] = [attachment_object(a) for a in _attached(message)]
    if message.role == "assistant":
        shaped["model"] = message.model
        shaped["metrics"] = (
            None
            if message.elapsed_ms is None
            else metrics(
                tokens=message.token_count or 0,
                elapsed_ms=message.elapsed_ms,
                first_token_ms=message.first_token_ms,
            )
        )
        shaped["error"] = (
            {"code": message.error_code, "message": message.error_message}
            if message.error_code
            else None
        )
        shaped["steps"] = list(message.steps or [])
        shaped["feedback"] = _feedback(message)
        shaped["history_left_out"] = message.history_left_out
        shaped["truncated"] = bool(getattr(message, "truncated", False))
    return shaped


def _attached(message: "Message") -> list[Any]:
    """The message's attachments as its reader loaded them: set by the begin (`attached`) or
    prefetched by the selector; never a query from here."""
    attached = getattr(message, "attached", None)
    if attached is None:
        attached = getattr(message, "_prefetched_objects_cache", {}).get("attachments", ())
    return list(attached)


def attachment_object(attachment: Any) -> AttachmentObject:
    """A stored Attachment as message objects and the upload's answer carry it."""
    return {
        "id": str(attachment.id),
        "name": attachment.name,
        "mime_type": attachment.mime_type,
        "size": attachment.size,
        "kind": attachment.kind,
        "url": f"/api/attachments/{attachment.id}/content",
    }


def _feedback(message: "Message") -> FeedbackObject | None:
    """The reply's feedback as its reader loaded it (`select_related("feedback")`, as the
    selectors do); never a query from here (frames are built on the event loop too)."""
    given = message._state.fields_cache.get("feedback")
    return feedback_object(given) if given is not None else None


def feedback_object(feedback: Any) -> FeedbackObject:
    """A saved Feedback as the message object and the API carry it."""
    return {
        "rating": feedback.rating,
        "tags": list(feedback.tags or []),
        "comment": feedback.comment,
        "updated_at": feedback.updated_at.isoformat(),
    }


def thread_object(thread: "Thread") -> ThreadObject:
    """A thread as frames, the page and the API show it."""
    return {
        "id": str(thread.id),
        "title": thread.title,
        "model": thread.model,
        "pinned": thread.pinned,
        "active_leaf": str(thread.active_leaf_id) if thread.active_leaf_id else None,
        "created_at": thread.created_at.isoformat(),
        "updated_at": thread.updated_at.isoformat(),
    }


def ready(*, thread_id: str | None, active: Snapshot | None) -> ReadyFrame:
    """The first frame on a socket, and the answer to `resync` (no thread: the user's
    socket)."""
    return {"type": "ready", "ts": now_ms(), "thread_id": thread_id, "active": active}


def message(*, message: MessageObject) -> MessageFrame:
    """A persisted user message, for every tab of the thread."""
    return {"type": "message", "ts": now_ms(), "message": message}


def thread(*, thread: ThreadObject) -> ThreadFrame:
    """A thread was made, or its title, model or branch changed."""
    return {"type": "thread", "ts": now_ms(), "thread": thread}


def thread_deleted(*, thread_id: str) -> ThreadDeletedFrame:
    """A thread was deleted, with all its messages."""
    return {"type": "thread_deleted", "ts": now_ms(), "thread_id": thread_id}


def feedback(*, message_id: str, given: FeedbackObject | None) -> FeedbackFrame:
    """A reply's feedback changed."""
    return {"type": "feedback", "ts": now_ms(), "message_id": message_id, "feedback": given}


def start(*, message_id: str, model: str, history_left_out: int = 0) -> StartFrame:
    """A reply began."""
    frame: StartFrame = {
        "type": "start",
        "ts": now_ms(),
        "message_id": message_id,
        "seq": 0,
        "model": model,
    }
    if history_left_out:
        frame["history_left_out"] = history_left_out
    return frame


def token(*, message_id: str, seq: int, text: str) -> TokenFrame:
    """A chunk of reply text (one or more model tokens)."""
    return {
        "type": "token",
        "ts": now_ms(),
        "message_id": message_id,
        "seq": seq,
        "token": text,
    }


def tool(*, message_id: str, seq: int, step: Step) -> ToolFrame:
    """A tool step, as it starts or ends."""
    frame: dict[str, Any] = {"type": "tool", "ts": now_ms(), "message_id": message_id, "seq": seq}
    frame.update(step)
    return frame  # type: ignore[return-value]


def complete(
    *,
    message_id: str,
    seq: int,
    status: Literal["complete", "cancelled"],
    metrics: Metrics,
    truncated: bool = False,
) -> CompleteFrame:
    """A reply ended normally or by `stop` (`truncated`: at the provider's token limit)."""
    frame: CompleteFrame = {
        "type": "complete",
        "ts": now_ms(),
        "message_id": message_id,
        "seq": seq,
        "status": status,
        "metrics": metrics,
    }
    if truncated:
        frame["truncated"] = True
    return frame


def error(
    *,
    code: ErrorCode,
    message: str,
    recoverable: bool,
    message_id: str | None = None,
    seq: int | None = None,
) -> ErrorFrame:
    """An error; with `message_id` (and its `seq`) it ends that reply like `complete` does."""
    frame: ErrorFrame = {
        "type": "error",
        "ts": now_ms(),
        "code": code,
        "message": message,
        "recoverable": recoverable,
    }
    if message_id is not None:
        if seq is None:
            raise TypeError("an error that ends a reply needs its seq")
        frame["message_id"] = message_id
        frame["seq"] = seq
    return frame


def heartbeat(*, active: Snapshot | Position | None = None, known: bool = True) -> HeartbeatFrame:
    """The answer to a client's heartbeat, with where the thread's reply stands.

    `active` is `{message_id, seq}` of the reply in flight (no text), or null: a client still
    showing a reply as streaming that the server has finished lost its last frames (the
    layer may drop frames silently) and resyncs instead of spinning forever. When the live
    state cannot be read (`known` false: Redis is restarting) `active` is left out, so no
    client takes the outage for the end of its reply.
    """
    frame: HeartbeatFrame = {"type": "heartbeat", "ts": now_ms()}
    if known:
        frame["active"] = (
            None if active is None else {"message_id": active["message_id"], "seq": active["seq"]}
        )
    return frame


def is_terminal(frame: Mapping[str, Any]) -> bool:
    """Whether the frame ends a reply."""
    return frame["type"] == "complete" or (frame["type"] == "error" and "message_id" in frame)


def of_saved_reply(reply: MessageObject) -> list[Frame]:
    """A finished reply, from its saved message object, as the frames that carried it."""
    message_id = reply["id"]
    replayed: list[Frame] = [start(message_id=message_id, model=reply.get("model") or "")]
    if reply["content"]:
        replayed.append(token(message_id=message_id, seq=1, text=reply["content"]))
    seq = len(replayed)
    status = reply["status"]
    if status == "complete" or status == "cancelled":
        replayed.append(
            complete(
                message_id=message_id,
                seq=seq,
                status=status,
                metrics=reply.get("metrics")
                or metrics(tokens=0, elapsed_ms=0, first_token_ms=None),
                truncated=bool(reply.get("truncated")),
            )
        )
    elif status == "error" or status == "interrupted":
        failure = reply.get("error") or {}
        replayed.append(
            error(
                code=failure.get("code") or "internal",
                message=failure.get("message") or "",
                recoverable=True,
                message_id=message_id,
                seq=seq,
            )
        )
    return replayed


def share_object(share: Any, *, url: str) -> ShareObject:
    """A saved Share as its owner sees it (`url`: the page's address, as the request made it)."""
    return {
        "token": share.token,
        "url": url,
        "up_to": str(share.up_to),
        "created_at": share.created_at.isoformat(),
        "expires_at": share.expires_at.isoformat() if share.expires_at else None,
    }


def share_url(token: str) -> str:
    """The path of a share's page."""
    return f"/s/{token}/"


def shared_message(message: "Message", *, token: str) -> SharedMessage:
    """A message as a share's snapshot keeps it: its role, text and time, a reply's steps by
    name and status, a user message's files at the share's own address; nothing else (its
    attachments as its reader loaded them, `prefetch_related`: never a query from here)."""
    shaped: SharedMessage = {
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at.isoformat(),
    }
    if message.steps:
        shaped["steps"] = [
            {"name": str(step.get("name", "")), "status": step.get("status", "done")}
            for step in message.steps
        ]
    if files := _attached(message):
        shaped["attachments"] = [
            {
                "name": a.name,
                "mime_type": a.mime_type,
                "size": a.size,
                "kind": a.kind,
                "url": f"/api/shares/{token}/attachments/{a.id}",
            }
            for a in files
        ]
    return shaped


def shared_thread(share: Any) -> SharedThread:
    """A share as its readers get it."""
    return {
        "title": share.title,
        "created_at": share.created_at.isoformat(),
        "messages": list(share.messages),
    }
