"""Writes: threads and the persisted life of a reply. Synchronous ORM code.

The generation service calls these through `database_sync_to_async`; nothing here is called
per token.
"""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from chat.models import Message, Thread

TITLE_CHARS = 60


def title_from_text(text: str) -> str:
    """A thread title from the first message: its first line, shortened on a word boundary."""
    line = " ".join(text.strip().split())
    if len(line) <= TITLE_CHARS:
        return line
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


def thread_create(*, owner: AbstractBaseUser, title: str = "") -> Thread:
    """A new, empty thread."""
    return Thread.objects.create(owner=owner, title=title.strip()[:200])


def reply_begin(
    *,
    thread_id: uuid.UUID,
    text: str,
    client_id: uuid.UUID,
    reply_id: uuid.UUID,
    model: str,
) -> tuple[Message, Message]:
    """Commit the user's message and the `streaming` reply in one transaction.

    Raises IntegrityError when the thread already has a message with this `client_id`.
    """
    with transaction.atomic():
        thread = Thread.objects.select_for_update().get(pk=thread_id)
        user_message = Message.objects.create(
            thread=thread,
            role=Message.Role.USER,
            content=text,
            status=Message.Status.COMPLETE,
            client_id=client_id,
        )
        reply = Message.objects.create(
            id=reply_id,
            thread=thread,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model=model,
        )
        if not thread.title:
            thread.title = title_from_text(text)
        thread.save(update_fields=["title", "updated_at"])
    return user_message, reply


def reply_checkpoint(*, reply_id: uuid.UUID, content: str) -> None:
    """Save the text shown so far of a reply still in flight."""
    Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(content=content)


def reply_finish(
    *,
    reply_id: uuid.UUID,
    content: str,
    status: str,
    error_code: str = "",
    error_message: str = "",
    token_count: int | None = None,
    first_token_ms: int | None = None,
    elapsed_ms: int | None = None,
) -> None:
    """The one final write of a reply: its text, terminal status and metrics."""
    Message.objects.filter(pk=reply_id).update(
        content=content,
        status=status,
        error_code=error_code,
        error_message=error_message,
        token_count=token_count,
        first_token_ms=first_token_ms,
        elapsed_ms=elapsed_ms,
        completed_at=timezone.now(),
    )


def replies_interrupt(*, reply_ids: list[uuid.UUID]) -> int:
    """Mark replies whose process died as `interrupted`, keeping their last checkpoint."""
    return Message.objects.filter(pk__in=reply_ids, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED,
        error_code="interrupted",
        error_message="The server stopped while this reply was being written.",
        completed_at=timezone.now(),
    )
