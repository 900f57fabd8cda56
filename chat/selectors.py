"""Reads: threads, messages and the agent's view of a thread. Synchronous ORM code.

Selectors return models and plain data; chat.frames shapes them for the wire and the API.
"""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from chat.models import Message, Thread


def thread_get_for_user(*, user: AbstractBaseUser, thread_id: str | uuid.UUID) -> Thread | None:
    """The user's thread with that id, or None (another user's thread is simply not found)."""
    try:
        return Thread.objects.get(pk=thread_id, owner=user)
    except (Thread.DoesNotExist, ValueError, ValidationError):
        return None


def thread_list(*, user: AbstractBaseUser) -> list[Thread]:
    """The user's threads, newest first."""
    return list(Thread.objects.filter(owner=user).order_by("-updated_at"))


# The most messages a reply's history takes, whatever their length.
HISTORY_MESSAGES = 200


def thread_history(
    *, thread_id: uuid.UUID, exclude_id: uuid.UUID | None, max_chars: int
) -> list[dict[str, str]]:
    """The thread as agent input: the most recent messages whose text fits in `max_chars`."""
    rows = (
        Message.objects.filter(thread_id=thread_id)
        .exclude(pk=exclude_id)
        .exclude(content="")
        .order_by("-created_at", "-id")
        .values_list("role", "content")
    )
    history: list[dict[str, str]] = []
    used = 0
    # A slice, not .iterator(): on PostgreSQL that is a server-side cursor, three more trips.
    for role, content in rows[:HISTORY_MESSAGES]:
        used += len(content)
        if history and used > max_chars:
            break
        history.append({"role": role, "content": content[-max_chars:]})
    history.reverse()
    return history


def thread_messages(*, thread_id: uuid.UUID) -> list[Message]:
    """All messages of a thread, oldest first."""
    return list(Message.objects.filter(thread_id=thread_id).order_by("created_at", "id"))


def reply_to_send(*, thread_id: str | uuid.UUID, client_id: uuid.UUID) -> Message | None:
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


def message_get(*, message_id: str | uuid.UUID) -> Message | None:
    """A message by id (the caller has checked its thread is the user's)."""
    return Message.objects.filter(pk=message_id).first()


def replies_streaming(*, thread_id: uuid.UUID | None = None) -> list[Message]:
    """Replies recorded as in flight, optionally of one thread."""
    qs = Message.objects.filter(status=Message.Status.STREAMING)
    if thread_id is not None:
        qs = qs.filter(thread_id=thread_id)
    return list(qs)
