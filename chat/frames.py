"""The wire frames of DESIGN.md, defined once for the WebSocket, SSE and tests.

Every server frame has `type` and `ts` (epoch ms). Frames of a reply carry `message_id` and
`seq`: 0 for `start`, then +1 per frame of that reply, so a client can detect a gap.
"""

import time
from typing import Any, Literal, TypedDict

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


class Metrics(TypedDict):
    """What a finished reply measured."""

    totalTokens: int
    elapsedSeconds: float
    throughputTokensPerSec: float
    timeToFirstTokenMs: int | None


class Snapshot(TypedDict):
    """A reply in flight: its text up to and including frame `seq`."""

    message_id: str
    seq: int
    content: str


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


def ready(*, thread_id: str, active: Snapshot | None) -> dict[str, Any]:
    """The first frame on a socket, and the answer to `resync`."""
    return {"type": "ready", "ts": now_ms(), "thread_id": thread_id, "active": active}


def message(*, message: dict[str, Any]) -> dict[str, Any]:
    """A persisted user message, for every tab of the thread."""
    return {"type": "message", "ts": now_ms(), "message": message}


def removed(*, message_ids: list[str]) -> dict[str, Any]:
    """Messages gone from the thread (an edit or a regenerate replaced them)."""
    return {"type": "removed", "ts": now_ms(), "message_ids": message_ids}


def thread(*, thread: dict[str, Any]) -> dict[str, Any]:
    """The thread itself changed (its title)."""
    return {"type": "thread", "ts": now_ms(), "thread": thread}


def start(*, message_id: str, model: str) -> dict[str, Any]:
    """A reply began."""
    return {
        "type": "start",
        "ts": now_ms(),
        "message_id": message_id,
        "seq": 0,
        "model": model,
    }


def token(*, message_id: str, seq: int, text: str) -> dict[str, Any]:
    """A chunk of reply text (one or more model tokens)."""
    return {
        "type": "token",
        "ts": now_ms(),
        "message_id": message_id,
        "seq": seq,
        "token": text,
    }


def complete(
    *,
    message_id: str,
    seq: int,
    status: Literal["complete", "cancelled"],
    metrics: Metrics,
) -> dict[str, Any]:
    """A reply ended normally or by `stop`."""
    return {
        "type": "complete",
        "ts": now_ms(),
        "message_id": message_id,
        "seq": seq,
        "status": status,
        "metrics": metrics,
    }


def error(
    *,
    code: ErrorCode,
    message: str,
    recoverable: bool,
    message_id: str | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    """An error; with `message_id` it ends that reply like `complete` does."""
    frame: dict[str, Any] = {
        "type": "error",
        "ts": now_ms(),
        "code": code,
        "message": message,
        "recoverable": recoverable,
    }
    if message_id is not None:
        frame["message_id"] = message_id
        frame["seq"] = seq
    return frame


def heartbeat(*, active: Snapshot | None = None, known: bool = True) -> dict[str, Any]:
    """The answer to a client's heartbeat, with where the thread's reply stands.

    `active` is `{message_id, seq}` of the reply in flight (no text), or null: a client still
    showing a reply as streaming that the server has finished lost its last frames (the
    layer may drop frames silently) and resyncs instead of spinning forever. When the live
    state cannot be read (`known` false: Redis is restarting) `active` is left out, so no
    client takes the outage for the end of its reply.
    """
    frame: dict[str, Any] = {"type": "heartbeat", "ts": now_ms()}
    if known:
        frame["active"] = (
            None if active is None else {"message_id": active["message_id"], "seq": active["seq"]}
        )
    return frame


def is_terminal(frame: dict[str, Any]) -> bool:
    """Whether the frame ends a reply."""
    return frame["type"] == "complete" or (frame["type"] == "error" and "message_id" in frame)


def of_saved_reply(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished reply, from its saved message object, as the frames that carried it."""
    message_id = reply["id"]
    replayed = [start(message_id=message_id, model=reply.get("model") or "")]
    if reply["content"]:
        replayed.append(token(message_id=message_id, seq=1, text=reply["content"]))
    seq = len(replayed)
    if reply["status"] in ("complete", "cancelled"):
        replayed.append(
            complete(
                message_id=message_id, seq=seq, status=reply["status"], metrics=reply["metrics"]
            )
        )
    elif reply["status"] in ("error", "interrupted"):
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
