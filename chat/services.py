"""Writes: threads and the persisted life of a reply. Synchronous ORM code.

Async code calls these through `dbthread.off_loop` (or `outage.db`); nothing here is called
per token.
"""

import datetime
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Case, QuerySet, Value, When
from django.utils import timezone

from chat import attachments, catalog, frames, inputs, model_choice, quota, selectors
from chat.engine import broadcast
from chat.errors import ChatError
from chat.models import Attachment, Feedback, Invite, Message, Preferences, Share, Thread

TITLE_CHARS = 60
INTERRUPTED_MESSAGE = "The server stopped while this reply was being written."


def title_from_text(text: str) -> str:
    """A thread title from the first message: its first line, shortened on a word boundary."""
    line = " ".join(text.strip().split())
    if len(line) <= TITLE_CHARS:
        return line
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


def thread_create(*, owner: AbstractBaseUser, title: str = "", model: object = None) -> Thread:
    """A new, empty thread with the model asked for (which the user may use, else
    `bad_request`: nothing is made) or the one they last chose; the owner's other tabs hear
    of it."""
    chosen = _model_chosen(owner.pk, model) or model_choice.for_reply(
        user_id=owner.pk, thread_id="", asked=None, new_thread=True
    )
    with transaction.atomic():
        thread = Thread.objects.create(owner=owner, title=title.strip()[:200], model=chosen.id)
        thread_announce(thread=thread)
    return thread


def _model_chosen(user_id: int, model: object) -> catalog.Model | None:
    """The model a user asked for (remembered as their choice for new threads), or None when
    they asked for none."""
    if model is None:
        return None
    chosen = model_choice.choose(user_id=user_id, model_id=model)
    _remember_model(user_id, chosen.id)
    return chosen


def _remember_model(user_id: int, model_id: str) -> None:
    """The model a user chose last: the one their new threads take."""
    Preferences.objects.update_or_create(user_id=user_id, defaults={"model": model_id})


def thread_set_model(*, thread: Thread, model: object) -> Thread:
    """Make `model` the thread's (from its next reply on) and the user's choice for new
    threads; a model they may not use is `bad_request`, and nothing changes."""
    chosen = _model_chosen(thread.owner_id, model)
    if chosen is not None and thread.model != chosen.id:
        thread.model = chosen.id
        thread.save(update_fields=["model", "updated_at"])
        thread_announce(thread=thread)
    return thread


def thread_announce(*, thread: Thread) -> None:
    """After the commit, tell the thread's sockets and every socket of its owner that the
    thread was made or changed (a `thread` frame)."""
    frame = frames.thread(thread=frames.thread_object(thread))
    topics = [str(thread.id), broadcast.user_topic(thread.owner_id)]
    broadcast.publish_after_commit(topics, frame)


def thread_delete(*, thread: Thread) -> None:
    """Delete the thread with its messages; its sockets and its owner's other tabs hear of it."""
    thread_id, owner_id = str(thread.id), thread.owner_id
    with transaction.atomic():  # its files go once its rows have (a file nobody uses)
        attachments_forget_files_of(messages=thread.messages.all())
        thread.delete()
    frame = frames.thread_deleted(thread_id=thread_id)
    broadcast.publish_after_commit([thread_id, broadcast.user_topic(owner_id)], frame)


def thread_rename(*, thread: Thread, title: str) -> Thread:
    """Give the thread a new title (cut at 200 characters); text that cannot be stored (a NUL,
    a lone surrogate) is refused as `bad_request`."""
    if (problem := inputs.text_problem(title)) is not None:
        raise ChatError("bad_request", f"The title is not valid: {problem}")
    title = title.strip()[:200]
    if thread.title != title:
        thread.title = title
        thread.save(update_fields=["title", "updated_at"])
        thread_announce(thread=thread)
    return thread


def thread_pin(*, thread: Thread, pinned: bool) -> Thread:
    """Pin the thread (the list shows it first) or unpin it; every tab of its owner hears of
    it. Its `updated_at` stays: pinning is no activity in the thread."""
    if thread.pinned != pinned:
        thread.pinned_at = timezone.now() if pinned else None
        thread.save(update_fields=["pinned_at"])
        thread_announce(thread=thread)
    return thread


class AlreadySent(Exception):
    """A command whose `client_id` the thread has already answered (a retried command)."""


@dataclass
class Begun:
    """What beginning a reply wrote: the reply, and maybe a user message."""

    reply: Message
    user_message: Message | None = None
    thread: Thread | None = None  # set when the thread's title changed
    history: list[dict[str, str]] = field(default_factory=list)  # the agent's input
    history_left_out: int = 0  # older messages the model's window could not take
    model_changed: Thread | None = None  # set when the thread's model changed
    continued: bool = False  # `reply` is a truncated reply extended (its text, its `frames`)


@dataclass(frozen=True)
class Ask:
    """What a new reply answers: a new message (`text`, saved as `message_id` when the
    caller named its id), the same message again (`regenerate`), a user message of the
    active path edited (`edited_id` and its new `text`), or a user message of the active path
    answered anew (`retry_after`). The last three make a new branch: nothing is removed."""

    client_id: uuid.UUID
    text: str | None = None
    message_id: uuid.UUID | None = None
    edited_id: uuid.UUID | None = None
    retry_after: uuid.UUID | None = None
    regenerate: bool = False
    # The id of the user whose new thread this message begins: the thread is created in the
    # begin's transaction, so a refused first message leaves no empty thread (ChatKit).
    new_thread_of: int | None = None
    # The model asked for (already checked: model_choice.choose): the thread's from now on, and the
    # user's choice for new threads. None: the thread's.
    model: str | None = None
    # Uploads the new message carries (their owner's, unsent). None with an edit: the edited
    # message's files go with the new version too (copied rows, one stored file).
    attachments: tuple[uuid.UUID, ...] | None = None
    # The thread's last reply, cut by the token limit, that this reply extends (`continue`):
    # the same message goes on streaming, its text growing.
    continued_id: uuid.UUID | None = None


def reply_open(
    *,
    ask: Ask,
    thread_id: uuid.UUID,
    reply_id: uuid.UUID,
    model: str,
    held_tokens: int = 0,
    vision: bool = False,
) -> Begun:
    """Begin the reply that `ask` asks for, in one transaction: the thread locked (or made,
    with `new_thread_of`, so it never exists empty), a repeated command refused, then the
    user's message (when it has text) and the `streaming` reply written where the ask puts
    them: after the active leaf, or beside what an edit, regenerate or retry answers anew (a
    new branch; nothing is removed). A refused ask changes nothing.

    `held_tokens` is what the reply holds of the user's budget, kept on its row so that a
    process that dies holding it can be settled exactly (`reply_interrupt`). Raises
    IntegrityError when a new message's `client_id` was sent before.
    """
    with transaction.atomic():
        if ask.new_thread_of is not None:
            thread = Thread.objects.create(id=thread_id, owner_id=ask.new_thread_of, model=model)
            thread_announce(thread=thread)
        else:
            thread = Thread.objects.select_for_update().get(pk=thread_id)
        if ask.continued_id is not None:
            return _continued(thread, ask, held_tokens)
        if ask.model is not None:
            _remember_model(thread.owner_id, ask.model)
        parent_id = _placed(thread, ask)
        begun = _begin(
            thread,
            text=ask.text,
            client_id=ask.client_id,
            reply_id=reply_id,
            model=model,
            held_tokens=held_tokens,
            message_id=ask.message_id,
            parent_id=parent_id,
        )
        if ask.edited_id is not None and ask.attachments is None:  # an edit keeps its files
            begun.user_message.attached = _attachments_copy(ask.edited_id, begun.user_message)
        elif ask.attachments:
            if begun.user_message is None:
                raise ChatError("bad_request", "Files go with a message.")
            begun.user_message.attached = _attach(
                list(ask.attachments), begun.user_message, thread.owner_id, vision, model
            )
        return begun


def _continued(thread: Thread, ask: Ask, held_tokens: int) -> Begun:
    """Inside the caller's transaction: the thread's active leaf, a finished reply cut by the
    token limit, streaming again (its text and its last `seq` kept); anything else is
    `bad_request`, and nothing changes. The reply takes the continue's `client_id`, so the
    same continue sent again is told apart (`AlreadySent`) from a continue of a reply that
    is no longer truncated."""
    _not_sent_before(thread, ask.client_id)
    last = Message.objects.filter(pk=thread.active_leaf_id, thread=thread).first()
    if (
        last is None
        or last.id != ask.continued_id
        or last.role != Message.Role.ASSISTANT
        or last.status != Message.Status.COMPLETE
        or not last.truncated
    ):
        raise ChatError(
            "bad_request", "Only the thread's last reply, cut by the token limit, can continue."
        )
    last.status = Message.Status.STREAMING
    last.held_tokens = held_tokens
    last.client_id = ask.client_id
    last.save(update_fields=["status", "held_tokens", "client_id"])
    return Begun(reply=last, continued=True)


def _placed(thread: Thread, ask: Ask) -> uuid.UUID | None:
    """The message the ask's new message follows (its parent): the active leaf for a new
    message; for an edit, a regenerate or a retry, the place of what it answers anew on the
    active path, where the new message becomes a sibling. One aimed at a message that is not
    on the active path is refused, and a repeated one is `AlreadySent`."""
    if not (ask.regenerate or ask.edited_id or ask.retry_after):
        return thread.active_leaf_id
    _not_sent_before(thread, ask.client_id)
    if ask.regenerate:
        last = Message.objects.filter(pk=thread.active_leaf_id).first()
        if last is None or last.role != Message.Role.ASSISTANT or last.status not in last.TERMINAL:
            raise ChatError("bad_request", "There is no finished reply to regenerate.")
        return last.parent_id
    asked_id = ask.edited_id or ask.retry_after
    asked = (
        Message.objects.filter(pk=asked_id, thread=thread, role=Message.Role.USER).first()
        if asked_id in selectors.path_ids(thread=thread)[0]
        else None
    )
    if asked is None:
        raise ChatError(
            "bad_request",
            "Only a message of the user's on the thread's current branch can be "
            + ("edited." if ask.edited_id else "answered again."),
        )
    return asked.parent_id if ask.edited_id else asked.id


def _not_sent_before(thread: Thread, client_id: uuid.UUID) -> None:
    """Refuse a retried regenerate, edit, retry or continue before it writes anything: it
    would run twice, and a continue already done has left a reply that is no longer truncated.
    (A new message is kept unique by the schema.)"""
    if thread.messages.filter(client_id=client_id).exists():
        raise AlreadySent(client_id)


def _begin(
    thread: Thread,
    *,
    text: str | None,
    client_id: uuid.UUID,
    reply_id: uuid.UUID,
    model: str,
    held_tokens: int = 0,
    message_id: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
) -> Begun:
    """Inside the caller's transaction: the user message (when there is text) and the reply,
    after `parent_id`; the reply becomes the thread's active leaf. Each new message knows its
    siblings (one query), so its frames are built without another."""
    user_message = None
    if text is not None:
        user_message = Message(
            id=message_id or uuid.uuid4(),
            thread=thread,
            parent_id=parent_id,
            role=Message.Role.USER,
            content=text,
            status=Message.Status.COMPLETE,
            client_id=client_id,
        )
    reply = Message(
        id=reply_id,
        thread=thread,
        parent_id=user_message.id if user_message else parent_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
        held_tokens=held_tokens,
        # A regenerated reply carries the command's client_id, so a retried command is a no-op.
        client_id=None if user_message else client_id,
    )
    # One INSERT for both (created_at is stamped in order: the reply after its message).
    Message.objects.bulk_create([m for m in (user_message, reply) if m is not None])
    placed = user_message or reply
    if parent_id == thread.active_leaf_id:
        # After the active leaf, which has no children (a switch resolves to a leaf), or the
        # first message of an empty thread: alone at its place.
        placed.siblings = {"index": 0, "count": 1, "ids": [str(placed.id)]}
    else:  # a new branch: beside what it answers anew
        beside = Message.objects.filter(thread=thread, parent_id=parent_id)
        tree = selectors.Tree(beside.order_by("created_at", "id").values_list("id", "parent_id"))
        selectors.with_siblings([placed], tree)
    if user_message is not None:
        reply.siblings = {"index": 0, "count": 1, "ids": [str(reply.id)]}
    retitled = not thread.title and text is not None
    if retitled:
        thread.title = title_from_text(text)
    remodelled = thread.model != model
    thread.model = model  # the model asked for, or the default for one no longer offered
    thread.active_leaf = reply
    thread.save(update_fields=["title", "model", "active_leaf", "updated_at"])
    return Begun(
        reply=reply,
        user_message=user_message,
        thread=thread if retitled else None,
        model_changed=thread if remodelled else None,
    )


def thread_switch(*, thread: Thread, active_leaf: object) -> Thread:
    """Show another branch: the path runs to `active_leaf` (a message of this thread, else
    `bad_request`), then on through its latest descendants. Refused `busy` while a reply
    runs on the thread (it would stream into a branch no tab shows); every tab of the thread
    hears of the switch (a `thread` frame). Nothing changes when it is refused."""
    with transaction.atomic():
        locked = Thread.objects.select_for_update().get(pk=thread.pk)
        tree = selectors.thread_tree(thread_id=thread.pk)
        try:
            chosen = uuid.UUID(str(active_leaf))
        except ValueError:
            chosen = None
        if chosen is None or chosen not in tree:
            raise ChatError("bad_request", "`active_leaf` must be a message of this thread.")
        if locked.messages.filter(status=Message.Status.STREAMING).exists():
            raise ChatError("busy", "A reply is being written in this thread; switch when it ends.")
        leaf = tree.leaf_under(chosen)
        if locked.active_leaf_id != leaf:
            locked.active_leaf_id = leaf
            locked.save(update_fields=["active_leaf", "updated_at"])
            thread_announce(thread=locked)
    return locked


def reply_history_cut(*, reply_id: uuid.UUID, left_out: int) -> None:
    """Record that the reply's input left out the thread's `left_out` oldest messages."""
    Message.objects.filter(pk=reply_id).update(history_left_out=left_out)


def thread_retitle(*, thread_id: uuid.UUID, title: str, expected: str) -> Thread | None:
    """Set a model-made title, unless the user renamed the thread meanwhile."""
    title = " ".join(title.split()).strip(" \"'*#.")[:200]
    if not title:
        return None
    updated = Thread.objects.filter(pk=thread_id, title=expected).update(
        title=title, updated_at=timezone.now()
    )
    return Thread.objects.get(pk=thread_id) if updated else None


def replies_checkpoint(*, contents: dict[uuid.UUID, str]) -> None:
    """Save the text shown so far of several replies in flight, in one UPDATE.

    Only rows still `streaming` are written, so a checkpoint that lands after a reply's final
    save cannot roll its text back.
    """
    if not contents:
        return
    Message.objects.filter(pk__in=list(contents), status=Message.Status.STREAMING).update(
        content=Case(*(When(pk=pk, then=Value(text)) for pk, text in contents.items()))
    )


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
    steps: list[dict] | None = None,
    truncated: bool = False,
    frames: int = 0,
) -> None:
    """The one final write of a reply: its text, tool steps, terminal status and metrics,
    whether the token limit cut it, and its terminal frame's `seq`."""
    Message.objects.filter(pk=reply_id).update(
        steps=steps or [],
        truncated=truncated,
        frames=frames,
        content=content,
        status=status,
        error_code=error_code,
        error_message=error_message,
        token_count=token_count,
        first_token_ms=first_token_ms,
        elapsed_ms=elapsed_ms,
        completed_at=timezone.now(),
    )


def reply_interrupt(
    *,
    reply_id: uuid.UUID,
    content: str | None,
    steps: list[dict] | None = None,
    frames_shown: int = 0,
) -> bool:
    """Mark a reply whose process died as `interrupted`, with the text its clients were shown
    (from its live record) or, when that is gone, its last checkpoint (`content` None), and
    settle the tokens it held: exactly its own hold given back, and what it showed (at least
    a token per frame shown, `frames_shown`) counted as spent. False if it had ended
    already."""
    fields = {"content": content} if content is not None else {}
    if steps is not None:  # a step still running when the process died never ended
        fields["steps"] = [
            {**step, "status": "cancelled"} if step["status"] == "running" else step
            for step in steps
        ]
    with transaction.atomic():
        interrupted = Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(
            status=Message.Status.INTERRUPTED,
            error_code="interrupted",
            error_message=INTERRUPTED_MESSAGE,
            completed_at=timezone.now(),
            **fields,
        )
        if interrupted:
            reply = Message.objects.select_related("thread").get(pk=reply_id)
            reply.token_count = quota.reply_hold_lost(
                user_id=reply.thread.owner_id,
                day=reply.created_at.date(),
                held=reply.held_tokens,
                content=reply.content,
                frames_shown=frames_shown,
                model=reply.model,
            )
            reply.save(update_fields=["token_count"])
    return bool(interrupted)


def reply_begun(*, reply_id: uuid.UUID) -> Begun | None:
    """What a begin committed, when its connection dropped before it could say so."""
    reply = Message.objects.filter(pk=reply_id).select_related("thread").first()
    if reply is None:
        return None
    tree = selectors.thread_tree(thread_id=reply.thread_id)
    if reply.client_id is not None:  # a regenerated reply: no user message of its own
        return Begun(reply=selectors.with_siblings([reply], tree)[0])
    user_message = selectors.message_get(message_id=reply.parent_id)
    selectors.with_siblings([m for m in (reply, user_message) if m is not None], tree)
    return Begun(reply=reply, user_message=user_message)


FEEDBACK_TAGS_MAX = 10  # tags on one feedback
FEEDBACK_TAG_CHARS = 40
FEEDBACK_COMMENT_CHARS = 2000


def feedback_set(*, message: Message, user: AbstractBaseUser, given: dict) -> Feedback | None:
    """The user's feedback on a finished reply of theirs, replacing any before, or removed
    with a null `rating`; the thread's other tabs hear of it. Bad feedback, or feedback on a
    user message or an unfinished reply, is `bad_request`, and nothing changes."""
    if message.role != Message.Role.ASSISTANT:
        raise ChatError("bad_request", "Only a reply can be rated.")
    if message.status not in Message.TERMINAL:
        raise ChatError("bad_request", "The reply is still being written; rate it when it ends.")
    rating, tags, comment = _feedback_fields(given)
    with transaction.atomic():
        if rating is None:
            Feedback.objects.filter(message=message).delete()
            saved = None
        else:
            saved, _ = Feedback.objects.update_or_create(
                message=message,
                defaults={"user": user, "rating": rating, "tags": tags, "comment": comment},
            )
        shaped = frames.feedback_object(saved) if saved is not None else None
        frame = frames.feedback(message_id=str(message.id), given=shaped)
        broadcast.publish_after_commit([str(message.thread_id)], frame)
    return saved


def _feedback_fields(given: object) -> tuple[str | None, list[str], str]:
    """The rating, tags and comment of a feedback body, checked."""
    if not isinstance(given, dict) or "rating" not in given:
        raise ChatError("bad_request", '`rating` is required: "up", "down" or null.')
    rating, tags, comment = given["rating"], given.get("tags", []), given.get("comment", "")
    if rating not in ("up", "down", None):
        raise ChatError("bad_request", '`rating` must be "up", "down" or null.')
    if (
        not isinstance(tags, list)
        or len(tags) > FEEDBACK_TAGS_MAX
        or not all(
            isinstance(tag, str) and 0 < len(tag.strip()) <= FEEDBACK_TAG_CHARS for tag in tags
        )
    ):
        raise ChatError(
            "bad_request",
            f"`tags` must be a list of at most {FEEDBACK_TAGS_MAX} non-empty strings of at "
            f"most {FEEDBACK_TAG_CHARS} characters.",
        )
    if not isinstance(comment, str) or len(comment) > FEEDBACK_COMMENT_CHARS:
        raise ChatError(
            "bad_request",
            f"`comment` must be a string of at most {FEEDBACK_COMMENT_CHARS} characters.",
        )
    for text in (*tags, comment):
        if (problem := inputs.text_problem(text)) is not None:
            raise ChatError("bad_request", f"The feedback is not valid: {problem}")
    unique = list(dict.fromkeys(tag.strip() for tag in tags))
    return rating, unique, comment.strip()


def attachment_create(*, owner: AbstractBaseUser, name: str, content: bytes) -> Attachment:
    """Store an upload: what it is is checked from its bytes (attachments.inspect: a refusal
    stores nothing), then the user's UPLOAD_QUOTA_BYTES, then the file, then its row (a row
    that cannot be written takes its file with it)."""
    return attachment_store(owner=owner, inspected=attachments.inspect(name, content))


def attachment_store(*, owner: AbstractBaseUser, inspected: attachments.Inspected) -> Attachment:
    """Keep an upload already inspected (attachments.inspect, which async code runs in a
    worker thread: a PDF's or an image's parse holds no event loop and no database thread)."""
    return _attachment_keep(Attachment(owner=owner), inspected, insert=True)


def attachment_announce(*, owner: AbstractBaseUser, name: str, mime_type: str) -> Attachment:
    """An upload announced before its bytes come (ChatKit's two-phase `attachments.create`):
    a row of size 0 (an uploaded file is never empty) that only `attachment_upload` fills.
    Its kind and type are the client's word until then, and it cannot be sent; the sweeper
    removes it after a day if its bytes never come."""
    claimed = str(mime_type or "")[:100]
    if claimed.startswith("image/"):
        kind = Attachment.Kind.IMAGE
    elif claimed == "application/pdf":
        kind = Attachment.Kind.DOCUMENT
    else:
        kind = Attachment.Kind.TEXT
    attachment = Attachment(
        owner=owner, name=attachments.clean_name(name), mime_type=claimed, kind=kind, size=0
    )
    attachment.path = f"{owner.pk}/{attachment.id}"  # where its bytes will go (none yet: a 404)
    attachment.save(force_insert=True)
    return attachment


def attachment_upload(*, attachment: Attachment, content: bytes) -> Attachment:
    """The bytes of an announced upload, through attachment_create's checks (a refusal stores
    nothing and leaves it waiting); refused if its bytes came already or it was removed."""
    return attachment_fill(
        attachment=attachment, inspected=attachments.inspect(attachment.name, content)
    )


def attachment_fill(*, attachment: Attachment, inspected: attachments.Inspected) -> Attachment:
    """An announced upload's bytes, already inspected, kept (see attachment_upload)."""
    with transaction.atomic():
        waiting = (
            Attachment.objects.select_for_update()
            .filter(pk=attachment.pk, owner_id=attachment.owner_id, size=0, message__isnull=True)
            .first()
        )
        if waiting is None:
            raise ChatError("bad_request", "This file was uploaded already, or removed.")
        return _attachment_keep(waiting, inspected, insert=False)


def _attachment_keep(
    attachment: Attachment, inspected: attachments.Inspected, *, insert: bool
) -> Attachment:
    """The inspected upload's file stored and its row written, within the owner's quota."""
    size = len(inspected.content)
    quota = settings.UPLOAD_QUOTA_BYTES
    if quota > 0:
        # A file is counted once, however many versions of a message share it.
        mine = Attachment.objects.filter(owner_id=attachment.owner_id)
        used = sum(size for _, size in set(mine.values_list("path", "size")))
        if used + size > quota:
            raise ChatError(
                "quota_exceeded",
                f"Your files take {used:,} of your {quota:,} bytes; remove some to add this one.",
            )
    attachment.name = inspected.name
    attachment.mime_type = inspected.mime_type
    attachment.kind = inspected.kind
    attachment.size = size
    attachment.text = inspected.text
    attachment.text_cut = inspected.cut
    store = storages["attachments"]
    attachment.path = store.save(
        f"{attachment.owner_id}/{attachment.id}", ContentFile(inspected.content)
    )
    try:
        attachment.save(force_insert=insert)
    except Exception:
        store.delete(attachment.path)
        raise
    return attachment


def attachment_delete(*, attachment: Attachment) -> None:
    """Remove an attachment and, once that commits, its file."""
    path = attachment.path
    attachment.delete()
    transaction.on_commit(lambda: _forget_files([path]))


def _forget_files(paths: list[str]) -> None:
    """Remove these stored files, each once no attachment row uses it any more (an edit's
    new version shares its files with the old: copied rows, one file)."""
    store = storages["attachments"]
    in_use = set(Attachment.objects.filter(path__in=paths).values_list("path", flat=True))
    for path in set(paths) - in_use:
        try:
            store.delete(path)
        except OSError:  # already gone: nothing to free
            pass


def _attachments_copy(edited_id: uuid.UUID, user_message: Message) -> list[Attachment]:
    """Inside the begin's transaction: the edited message's files given to its new version
    too (new rows, the same stored files; the old version keeps its own rows)."""
    copies = [
        Attachment(
            owner_id=a.owner_id,
            message=user_message,
            name=a.name,
            mime_type=a.mime_type,
            kind=a.kind,
            size=a.size,
            path=a.path,
            text=a.text,
            text_cut=a.text_cut,
        )
        for a in Attachment.objects.filter(message_id=edited_id).order_by("created_at", "id")
    ]
    return Attachment.objects.bulk_create(copies)


def attachments_forget_files_of(*, messages: QuerySet[Message]) -> None:
    """Before `messages` are deleted (their attachment rows go with them): remove their files
    once the deletion commits."""
    paths = list(Attachment.objects.filter(message__in=messages).values_list("path", flat=True))
    if paths:
        transaction.on_commit(lambda: _forget_files(paths))


UNSENT_ATTACHMENT_HOURS = 24


def attachments_sweep() -> int:
    """Remove uploads never sent with a message, a day after they came; the count removed."""
    cutoff = timezone.now() - datetime.timedelta(hours=UNSENT_ATTACHMENT_HOURS)
    stale = Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff)
    paths = list(stale.values_list("path", flat=True))
    removed, _ = stale.delete()
    _forget_files(paths)
    return removed


def _attach(
    ids: list[uuid.UUID], user_message: Message, owner_id: int, vision: bool, model: str
) -> list[Attachment]:
    """Inside the begin's transaction: give the user's message these attachments (their
    owner's own uploads, not sent with another message), refusing an image for a model
    without vision; `bad_request` rolls everything back."""
    ids = list(dict.fromkeys(ids))
    if len(ids) > settings.MAX_ATTACHMENTS:
        raise ChatError("bad_request", f"At most {settings.MAX_ATTACHMENTS} files on a message.")
    found = list(
        Attachment.objects.select_for_update().filter(
            pk__in=ids, owner_id=owner_id, message__isnull=True, size__gt=0
        )
    )
    if len(found) != len(ids):
        raise ChatError(
            "bad_request",
            "An attachment is not yours, was removed, was sent with another message, "
            "or its upload has not finished.",
        )
    if not vision and any(a.kind == Attachment.Kind.IMAGE for a in found):
        raise ChatError(
            "bad_request", f"The model {model} does not take images: pick one that does."
        )
    Attachment.objects.filter(pk__in=ids).update(message=user_message)
    found.sort(key=lambda a: ids.index(a.pk))
    return found


def preferences_set(
    *, user: AbstractBaseUser, instructions: str | None = None, theme: str | None = None
) -> Preferences:
    """Save what the user chose on their settings page: their own instructions to the agent
    (at most USER_INSTRUCTIONS_CHARS, else `too_large`; text that cannot be stored is
    `bad_request`), read by every reply begun after this, and the page's theme."""
    prefs, _ = Preferences.objects.get_or_create(user=user)
    if instructions is not None:
        if (problem := inputs.text_problem(instructions)) is not None:
            raise ChatError("bad_request", problem)
        instructions = instructions.strip().replace("\r\n", "\n")
        if len(instructions) > settings.USER_INSTRUCTIONS_CHARS:
            raise ChatError(
                "too_large",
                f"Your instructions are {len(instructions)} characters; the limit is "
                f"{settings.USER_INSTRUCTIONS_CHARS}.",
            )
        prefs.instructions = instructions
    if theme is not None:
        if theme not in Preferences.Theme.values:
            raise ChatError("bad_request", f"The theme is one of {', '.join(Preferences.Theme)}.")
        prefs.theme = theme
    prefs.save()
    return prefs


def account_delete(*, user: AbstractBaseUser) -> None:
    """Delete the user and everything of theirs: threads and messages, attachments and, once
    that commits, their files, feedback, token usage, preferences and client secrets (all
    by cascade). Their sockets and streams on every process end (standing.py hears the
    deletion), and their other tabs hear each thread go."""
    with transaction.atomic():
        paths = list(Attachment.objects.filter(owner=user).values_list("path", flat=True))
        thread_ids = [
            str(pk) for pk in Thread.objects.filter(owner=user).values_list("id", flat=True)
        ]
        user.delete()
        if paths:
            transaction.on_commit(lambda: _forget_files(paths))
        for thread_id in thread_ids:
            frame = frames.thread_deleted(thread_id=thread_id)
            broadcast.publish_after_commit([thread_id], frame)


# Live shares one thread, and one user, may have: each is a copy of its thread's path, so these
# bound what sharing can store (docs/security.md).
SHARES_PER_THREAD = 100
SHARES_PER_USER = 1000
# The longest `expires_in` (ten years): past it, "never" says what is meant.
SHARE_MAX_SECONDS = 10 * 365 * 24 * 3600


def share_create(*, thread: Thread, up_to: object = None, expires_in: object = None) -> Share:
    """A read-only snapshot of the thread for anyone with its link: a copy, made now, of the
    path the thread shows from its first message to `up_to` (a message on that path that is
    not streaming; default: the path's last such message), expiring after `expires_in`
    seconds (an integer >= 1; default: never). Anything else is `bad_request`, and nothing
    is saved."""
    expires_at = _share_expiry(expires_in)
    with transaction.atomic():
        # One share at a time per thread: the bound below is checked against what is saved.
        thread = Thread.objects.select_for_update().get(pk=thread.pk)
        path = selectors.active_path(thread=thread)
        end = _share_end(thread, path, up_to)
        live = selectors.shares_live()
        if live.filter(thread=thread).count() >= SHARES_PER_THREAD:
            raise ChatError(
                "bad_request",
                f"A thread may have {SHARES_PER_THREAD} live shares: revoke one first.",
            )
        if live.filter(thread__owner_id=thread.owner_id).count() >= SHARES_PER_USER:
            raise ChatError(
                "bad_request", f"You may have {SHARES_PER_USER} live shares: revoke one first."
            )
        token = secrets.token_urlsafe(32)
        return Share.objects.create(
            token=token,
            thread=thread,
            up_to=path[end].id,
            title=thread.title,
            # A reply that failed before any text or step would be an empty box: left out.
            messages=[
                frames.shared_message(m, token=token)
                for m in path[: end + 1]
                if m.role != Message.Role.ASSISTANT or m.content or m.steps
            ],
            expires_at=expires_at,
        )


def _share_expiry(expires_in: object) -> datetime.datetime | None:
    if expires_in is None:
        return None
    if (
        not isinstance(expires_in, int)
        or isinstance(expires_in, bool)
        or not 1 <= expires_in <= SHARE_MAX_SECONDS
    ):
        raise ChatError(
            "bad_request",
            f"`expires_in` is a whole number of seconds from 1 to {SHARE_MAX_SECONDS}, "
            "or left out for a share that does not expire.",
        )
    return timezone.now() + datetime.timedelta(seconds=expires_in)


def _share_end(thread: Thread, path: list[Message], up_to: object) -> int:
    """The index on `path` of the snapshot's last message."""
    if up_to is None:
        shown = [i for i, m in enumerate(path) if m.status != Message.Status.STREAMING]
        if not shown:
            raise ChatError("bad_request", "The thread has no finished message to share yet.")
        return shown[-1]
    try:
        wanted = uuid.UUID(str(up_to))
    except ValueError:
        raise ChatError("bad_request", "`up_to` is a message id.") from None
    for i, message in enumerate(path):
        if message.id == wanted:
            if message.status == Message.Status.STREAMING:
                raise ChatError(
                    "bad_request", "That reply is still being written: share it once it ends."
                )
            return i
    if Message.objects.filter(pk=wanted, thread=thread).exists():
        raise ChatError("bad_request", "`up_to` is not on the path the thread shows.")
    raise ChatError("bad_request", "`up_to` is not a message of this thread.")


def share_revoke(*, share: Share) -> None:
    """End a share: its link, page and files answer 404 from now on."""
    share.delete()


def shares_sweep() -> int:
    """Remove expired shares (they already answer 404); the count removed."""
    removed, _ = Share.objects.filter(expires_at__lte=timezone.now()).delete()
    return removed


def _invite_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_create(
    *, created_by: AbstractBaseUser | None, note: str = "", days: int | None = None
) -> tuple[Invite, str]:
    """A new invite, and its token (the link's last part): shown this once, only its hash
    kept. It works for `days` (INVITE_DAYS when not given)."""
    days = settings.INVITE_DAYS if days is None else days
    if days < 1:
        raise ChatError("bad_request", "An invite works for at least a day.")
    token = secrets.token_urlsafe(32)
    invite = Invite.objects.create(
        token_hash=_invite_hash(token),
        note=note[:200],
        created_by=created_by,
        expires_at=timezone.now() + datetime.timedelta(days=days),
    )
    return invite, token


class InviteUnusable(Exception):
    """An invite link that makes no account: unknown, used, or expired (`reason`)."""

    def __init__(self, reason: str, invite: Invite | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invite = invite


def invite_check(*, token: str, lock: bool = False) -> Invite:
    """The invite behind a link's token, if it still makes an account; else InviteUnusable
    (`unknown`, `used`, `expired`). `lock`: inside the caller's transaction, held until it
    ends, so two people opening one link make one account."""
    invites = Invite.objects.select_for_update() if lock else Invite.objects
    invite = invites.filter(token_hash=_invite_hash(token)).first()
    if invite is None:
        raise InviteUnusable("unknown")
    if invite.used_at is not None:
        raise InviteUnusable("used", invite)
    if invite.expires_at <= timezone.now():
        raise InviteUnusable("expired", invite)
    return invite


def invite_accept(*, token: str, make_user) -> AbstractBaseUser:
    """Make the invited account (`make_user()`, in the same transaction) and use the invite
    up: one account per invite, however many open it at once. InviteUnusable if it cannot."""
    with transaction.atomic():
        invite = invite_check(token=token, lock=True)
        user = make_user()
        invite.used_at = timezone.now()
        invite.used_by = user
        invite.save(update_fields=["used_at", "used_by"])
    return user
