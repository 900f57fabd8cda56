"""Reads: threads, messages and the agent's view of a thread. Synchronous ORM code.

Selectors return models and plain data; chat.frames shapes them for the wire and the API.
"""

import base64
import uuid
from typing import Any, NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.db.models import Q, QuerySet
from django.utils import timezone

from chat import attachments
from chat.models import Attachment, Message, Preferences, Share, Thread


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

    messages: list[dict[str, Any]]
    left_out: int


# What an image takes of a history's character budget (about a thousand tokens).
IMAGE_CHARS = 3000
NO_VISION = "the model now answering cannot see images."


def thread_history(
    *, thread_id: uuid.UUID, leaf_id: uuid.UUID | None, max_chars: int, vision: bool = False
) -> History:
    """The path from the thread's first message to `leaf_id` (a reply's parent; a continued
    reply itself) as agent input, never a message of another branch: its most recent messages
    whose text (their files' text included, an image counted as IMAGE_CHARS) fits in
    `max_chars` (the model's context window, catalog.py), and the count of older ones left
    out. A message with files is a list of parts: its text with each text file's, then its
    images (a model without vision gets a note in their place)."""
    whole = thread_tree(thread_id=thread_id).path_to(leaf_id)
    path = whole[-HISTORY_MESSAGES * 2 :]
    rows = (
        Message.objects.filter(pk__in=path)
        .exclude(content="", attachments__isnull=True)
        .order_by("-created_at", "-id")
    )
    # One query: a message with files comes once per file (the join), its ids beside it.
    fetched: dict[uuid.UUID, tuple[str, str, list[uuid.UUID]]] = {}
    for pk, role, content, attached in rows.values_list("id", "role", "content", "attachments"):
        entry = fetched.setdefault(pk, (role, content, []))
        if attached is not None:
            entry[2].append(attached)
    files = _files_of([a for _, _, ids in fetched.values() for a in ids])
    history: list[dict[str, Any]] = []
    used = 0
    for role, content, ids in list(fetched.values())[:HISTORY_MESSAGES]:
        parts = [files[a] for a in ids if a in files]
        used += len(content) + sum(_part_chars(p) for p in parts)
        if history and used > max_chars:
            break
        history.append(_message_input(role, content[-max_chars:], parts, vision))
    history.reverse()
    left_out = len(fetched) - len(history) + len(whole) - len(path)
    return History(history, left_out)


def opening_history(message: Message | None, *, max_chars: int) -> History | None:
    """What `thread_history` would read for a reply to `message` when it opens its thread (no
    parent) and carries no files: the message alone, read from nothing. None otherwise."""
    if message is None or message.parent_id is not None or getattr(message, "attached", None):
        return None
    return History([_message_input(message.role, message.content[-max_chars:], [], False)], 0)


class Tree:
    """A thread's messages as a tree of ids (read in one query, oldest first): the paths,
    the latest descendants and the siblings of docs/protocol.md's "Branches"."""

    def __init__(self, rows: list[tuple[uuid.UUID, uuid.UUID | None]]) -> None:
        self.parent: dict[uuid.UUID, uuid.UUID | None] = {}
        self.children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
        for pk, parent_id in rows:
            self.parent[pk] = parent_id
            self.children.setdefault(parent_id, []).append(pk)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.parent

    def path_to(self, leaf_id: uuid.UUID | None) -> list[uuid.UUID]:
        """The ids from the first message to `leaf_id`, oldest first (none for None)."""
        path = []
        at = leaf_id if leaf_id in self.parent else None
        while at is not None:
            path.append(at)
            at = self.parent[at]
        path.reverse()
        return path

    def leaf_under(self, message_id: uuid.UUID) -> uuid.UUID:
        """The message, or the end of the path through its latest descendants."""
        at = message_id
        while self.children.get(at):
            at = self.children[at][-1]
        return at

    def siblings(self, message_id: uuid.UUID) -> dict[str, Any]:
        """The alternatives at the message's place, itself included, oldest first."""
        ids = self.children.get(self.parent.get(message_id), [message_id])
        return {"index": ids.index(message_id), "count": len(ids), "ids": [str(i) for i in ids]}


def thread_tree(*, thread_id: uuid.UUID) -> Tree:
    """The thread's tree of messages, ids only, in one query."""
    rows = Message.objects.filter(thread_id=thread_id).order_by("created_at", "id")
    return Tree(list(rows.values_list("id", "parent_id")))


def with_siblings(messages: list[Message], tree: Tree) -> list[Message]:
    """The messages, each given its `siblings` (frames.message_object shows them)."""
    for message in messages:
        message.siblings = tree.siblings(message.id)
    return messages


def preferences_of(*, user: AbstractBaseUser) -> Preferences:
    """The user's preferences, unsaved defaults when they never chose anything."""
    return Preferences.objects.filter(user=user).first() or Preferences(user=user)


def _files_of(ids: list[uuid.UUID]) -> dict[uuid.UUID, Attachment]:
    if not ids:
        return {}
    return {a.pk: a for a in Attachment.objects.filter(pk__in=ids)}


def _part_chars(attachment: Attachment) -> int:
    return IMAGE_CHARS if attachment.kind == Attachment.Kind.IMAGE else len(attachment.text)


def _message_input(
    role: str, content: str, files: list[Attachment], vision: bool
) -> dict[str, Any]:
    """One message as the agent's input: plain text, or text and image parts with its files."""
    if not files:
        return {"role": role, "content": content}
    text = content
    images: list[dict[str, Any]] = []
    for attachment in files:
        if attachment.kind != Attachment.Kind.IMAGE:
            text += attachments.for_model(attachment.name, attachment.text, attachment.text_cut)
        elif vision:
            images.append(
                {"type": "input_image", "image_url": _data_url(attachment), "detail": "auto"}
            )
        else:
            text += f"\n\n[An image, {attachment.name}, was attached here: {NO_VISION}]"
    return {"role": role, "content": [{"type": "input_text", "text": text}, *images]}


def _data_url(attachment: Attachment) -> str:
    with storages["attachments"].open(attachment.path, "rb") as stored:
        encoded = base64.b64encode(stored.read()).decode("ascii")
    return f"data:{attachment.mime_type};base64,{encoded}"


def thread_messages(*, thread_id: uuid.UUID) -> list[Message]:
    """Every message of a thread, every branch, oldest first, with their feedback, files and
    siblings (the JSON export's tree)."""
    messages = list(
        Message.objects.filter(thread_id=thread_id)
        .select_related("feedback")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )
    return with_siblings(messages, Tree([(m.id, m.parent_id) for m in messages]))


def path_ids(*, thread: Thread) -> tuple[list[uuid.UUID], Tree]:
    """The ids of the thread's active path, oldest first, and the tree they were read from."""
    tree = thread_tree(thread_id=thread.id)
    return tree.path_to(thread.active_leaf_id), tree


def active_path(*, thread: Thread, newest: int | None = None) -> list[Message]:
    """The messages the thread shows, oldest first: from its first message to its active leaf,
    each the parent of the next (the other branches of the tree left out), with their
    feedback, files and siblings; with `newest`, only that many of the path's last ones are
    read."""
    ids, tree = path_ids(thread=thread)
    if newest is not None:
        ids = ids[-newest:]
    messages = list(
        Message.objects.filter(pk__in=ids)
        .select_related("feedback")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )
    return with_siblings(messages, tree)


def reply_to_send(*, thread_id: str | uuid.UUID, client_id: uuid.UUID) -> Message | None:
    """The reply that answered this `client_id` already (its user message's, or its own)."""
    sent = Message.objects.filter(thread_id=thread_id, client_id=client_id).first()
    if sent is None or sent.role == Message.Role.ASSISTANT:
        return sent
    replies = Message.objects.filter(parent=sent, role=Message.Role.ASSISTANT)
    return replies.order_by("created_at", "id").first() or sent


def message_get(*, message_id: str | uuid.UUID) -> Message | None:
    """A message by id (the caller has checked its thread is the user's)."""
    return (
        Message.objects.filter(pk=message_id)
        .select_related("feedback")
        .prefetch_related("attachments")
        .first()
    )


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


def attachment_get_for_user(*, user: AbstractBaseUser, attachment_id: object) -> Attachment | None:
    """The user's attachment with that id, or None (another user's is simply not found)."""
    try:
        return Attachment.objects.filter(pk=attachment_id, owner=user).first()
    except (ValueError, ValidationError):
        return None


def shares_live() -> QuerySet[Share]:
    """Shares not expired (a revoked one is deleted)."""
    return Share.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def share_get(*, token: str) -> Share | None:
    """The live share with that token, for anyone who has it; None when revoked, expired or
    unknown (all three are simply not found)."""
    if not token or len(token) > Share._meta.get_field("token").max_length:
        return None
    return shares_live().filter(token=token).first()


def share_get_for_user(*, user: AbstractBaseUser, token: str) -> Share | None:
    """A share of one of the user's threads, or None (another user's is simply not found)."""
    if not token or len(token) > Share._meta.get_field("token").max_length:
        return None
    return Share.objects.filter(token=token, thread__owner=user).first()


def thread_shares(*, thread: Thread) -> list[Share]:
    """The thread's live shares, newest first."""
    return list(shares_live().filter(thread=thread).order_by("-created_at", "-id"))


def share_attachment(*, share: Share, attachment_id: object) -> Attachment | None:
    """A file of the share's snapshot (one its messages list), or None: a share opens no
    other file of its owner's, not even one of the same thread."""
    url = f"/api/shares/{share.token}/attachments/{attachment_id}"
    listed = {
        file.get("url") for message in share.messages for file in message.get("attachments", ())
    }
    if url not in listed:
        return None
    try:
        return Attachment.objects.filter(pk=attachment_id, message__thread=share.thread_id).first()
    except (ValueError, ValidationError):
        return None
