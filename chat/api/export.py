"""A thread as a file: Markdown to read, JSON to keep or move elsewhere."""

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from chat import frames, selectors
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


def thread_data(thread: Thread, messages: list[Message]) -> dict[str, Any]:
    """The thread and its messages as docs/protocol.md's objects."""
    data: dict[str, Any] = dict(frames.thread_object(thread))
    data["messages"] = [frames.message_object(m) for m in messages]
    return data


def thread_json(thread: Thread, messages: list[Message]) -> str:
    """`thread_data` as a JSON file."""
    return json.dumps(thread_data(thread, messages), indent=2, ensure_ascii=False)


def account_json(user: AbstractBaseUser) -> str:
    """Everything the user has here, as one JSON file (before deleting the account): who they
    are, their preferences, and every thread with its messages as `thread_json` has them
    (attachments by name, type, size and URL, not their bytes)."""
    prefs = selectors.preferences_of(user=user)
    threads = Thread.objects.filter(owner=user).order_by("created_at", "id")
    data = {
        "exported_at": timezone.now().isoformat(),
        "user": {
            "username": user.get_username(),
            "email": getattr(user, "email", ""),
            "date_joined": user.date_joined.isoformat() if user.date_joined else None,
        },
        "preferences": {
            "model": prefs.model,
            "instructions": prefs.instructions,
            "theme": prefs.theme,
        },
        "threads": [
            thread_data(thread, selectors.thread_messages(thread_id=thread.id))
            for thread in threads
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False)
