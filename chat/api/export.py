"""A thread as a file: Markdown to read, JSON to keep or move elsewhere."""

import json
from typing import Any

from chat import frames
from chat.models import Message, Thread

ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def thread_markdown(thread: Thread, messages: list[Message]) -> str:
    """The thread as Markdown: a heading per message, its text as written."""
    lines = [f"# {thread.title or 'Untitled thread'}", ""]
    lines.append(
        f"_Exported {len(messages)} messages; started {thread.created_at:%Y-%m-%d %H:%M} UTC._"
    )
    for message in messages:
        heading = ROLE_HEADINGS.get(message.role, message.role)
        if message.role == Message.Role.ASSISTANT and message.model:
            heading += f" ({message.model})"
        if message.status not in (Message.Status.COMPLETE, ""):
            heading += f" [{message.status}]"
        lines += ["", f"## {heading}", ""]
        for step in message.steps or []:
            lines.append(
                f"> Tool `{step.get('name', '')}` ({step.get('status', '')}): "
                f"`{step.get('arguments', '')}` → {_one_line(step.get('output', ''))}"
            )
        if message.steps:
            lines.append("")
        lines.append(message.content or "_(no text)_")
        attached = frames.message_object(message).get("attachments") or []
        if attached:
            lines.append("")
            lines += [
                f"- Attached: {a['name']} ({a['mime_type']}, {a['size']:,} bytes)" for a in attached
            ]
    return "\n".join(lines) + "\n"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thread_json(thread: Thread, messages: list[Message]) -> str:
    """The thread and its messages as docs/protocol.md's objects."""
    data: dict[str, Any] = dict(frames.thread_object(thread))
    data["messages"] = [frames.message_object(m) for m in messages]
    return json.dumps(data, indent=2, ensure_ascii=False)
