"""Reads: threads, messages and the agent's view of a thread. Synchronous ORM code.

Selectors return models and plain data; chat.frames shapes them for the wire and the API.
"""

import uuid
from typing import NamedTuple

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


class History(NamedTuple):
    """The agent's input: the thread's newest messages that fit, and how many did not."""

    messages: list[dict[str, str]]
    left_out: int


def thread_history(
    *, thread_id: uuid.UUID, exclude_id: uuid.UUID | None, max_chars: int
) -> History:
    """The thread as agent input: the most recent messages whose text fits in `max_chars`
    (the model's context window, catalog.py), and the count of older ones left out."""
    rows = (
        Message.objects.filter(thread_id=thread_id)
        .exclude(pk=exclude_id)
        .exclude(content="")
        .order_by("-created_at", "-id")
    )
    history: list[dict[str, str]] = []
    used = 0
    # A slice, not .iterator(): on PostgreSQL that is a server-side cursor, three more trips.
    fetched = list(rows.values_list("role", "content")[: HISTORY_MESSAGES + 1])
    for role, content in fetched[:HISTORY_MESSAGES]:
        used += len(content)
        if history and used > max_chars:
            break
        history.append({"role": role, "content": content[-max_chars:]})
    history.reverse()
    left_out = len(fetched) - len(history)
    if len(fetched) > HISTORY_MESSAGES:  # more than were read: count them (rare)
        left_out = rows.count() - len(history)
    return History(history, left_out)


def thread_messages(*, thread_id: uuid.UUID) -> list[Message]:
    """All messages of a thread, oldest first, with their feedback."""
    return list(
        Message.objects.filter(thread_id=thread_id)
        .select_related("feedback")
        .order_by("created_at", "id")
    )


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
    return Message.objects.filter(pk=message_id).select_related("feedback").first()


def message_get_for_user(*, user: AbstractBaseUser, message_id: object) -> Message | None:
    """The message with that id in one of the user's threads, or None (another user's is
    simply not found)."""
    try:
        return (
            Message.objects.select_related("thread", "feedback")
            .filter(pk=message_id, thread__owner=user)
            .first()
        )
    except (ValueError, ValidationError):
        return None


def replies_streaming(*, thread_id: uuid.UUID | None = None) -> list[Message]:
    """Replies recorded as in flight, optionally of one thread."""
    qs = Message.objects.filter(status=Message.Status.STREAMING)
    if thread_id is not None:
        qs = qs.filter(thread_id=thread_id)
    return list(qs)
