"""Threads, messages, feedback, preferences and token usage: the data model (chat.frames shapes
it for the wire)."""

import uuid

from django.conf import settings
from django.db import models


def default_model() -> str:
    """A new thread's model, when its maker names none: the configured default (catalog.py)."""
    from chat import catalog  # catalog reads these models: imported when first needed
    from chat.errors import ChatError

    try:
        return catalog.default().id
    except ChatError:  # a misconfigured provider: the thread's first reply says what is wrong
        return ""


class Thread(models.Model):
    """A conversation owned by one user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="threads"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    # The model its next reply uses (catalog.py): the user's choice, kept per thread.
    model = models.CharField(max_length=200, blank=True, default=default_model)
    # The leaf of the path the thread shows (Branches in docs/protocol.md): every message has a
    # parent, so a thread is a tree; null only while the thread has no message.
    active_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the user pinned it (the thread list shows pinned threads first); null: not pinned.
    pinned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Thread {str(self.id)[:8]}"

    @property
    def pinned(self) -> bool:
        """Whether its owner pinned it (the API's and frames' `pinned`)."""
        return self.pinned_at is not None


class Message(models.Model):
    """One user, assistant or system message of a thread."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        SYSTEM = "system"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    TERMINAL = frozenset({Status.COMPLETE, Status.CANCELLED, Status.ERROR, Status.INTERRUPTED})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    # The message this one follows (null for a thread's first): an edit or a regenerate adds a
    # sibling beside what it replaces instead of removing it.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True
    )
    # Sent by the client with `start`; unique per thread so a retried send never duplicates.
    client_id = models.UUIDField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    token_count = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    elapsed_ms = models.PositiveIntegerField(null=True, blank=True)
    # A reply's tool steps (docs/protocol.md, "Step"), in call order; saved with its end.
    steps = models.JSONField(default=list, blank=True)
    # Tokens a running reply holds of its user's daily budget (quota.py): what settling it
    # gives back if its process dies.
    held_tokens = models.PositiveIntegerField(default=0)
    # Earlier messages of the thread left out of this reply's input: its model's context
    # window could not take them (catalog.py).
    history_left_out = models.PositiveIntegerField(default=0)
    # Replies: the provider ended it at its token limit (a `continue` extends it), and the
    # `seq` of its terminal frame (where a continuation's frames carry on).
    truncated = models.BooleanField(default=False)
    frames = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["thread", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="unique_client_id_per_thread",
            )
        ]
        indexes = [models.Index(fields=["thread", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class ReplyInFlight(Message):
    """Assistant replies still streaming, for the admin's list of replies in flight."""

    class Meta:
        proxy = True
        verbose_name = "reply in flight"
        verbose_name_plural = "replies in flight"


class TokenUsage(models.Model):
    """Output tokens one user spent on one UTC day, and those held for replies still running
    (quota.py: the day's budget is DAILY_TOKEN_BUDGET); input tokens, for DAILY_INPUT_BUDGET."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="token_usage"
    )
    day = models.DateField()
    used = models.PositiveBigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    input_used = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "user"]
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="one_usage_a_day")]
        verbose_name_plural = "token usage"

    def __str__(self) -> str:
        return f"{self.user} on {self.day}: {self.used} tokens"


class ClientSecretGrant(models.Model):
    """A client secret minted by a browser session (auth.py): the secret lives only while the
    session that minted it does, so logout ends it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_secrets"
    )
    session_key = models.CharField(max_length=40, db_index=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"client secret of {self.user} until {self.expires_at:%Y-%m-%d %H:%M}"


class ModelUsage(models.Model):
    """Tokens one user spent with one model on one UTC day, by kind: what the bill is made of
    (input is most of it: the history is sent again every turn)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_usage"
    )
    day = models.DateField()
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    replies = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)  # replies that ended error or interrupted
    # Replies by time to first token, in TTFT_BUCKETS_MS (the last: slower, or none came):
    # the usage dashboard's median, without reading a message.
    ttft_1 = models.PositiveIntegerField(default=0)
    ttft_2 = models.PositiveIntegerField(default=0)
    ttft_3 = models.PositiveIntegerField(default=0)
    ttft_4 = models.PositiveIntegerField(default=0)
    ttft_5 = models.PositiveIntegerField(default=0)
    ttft_6 = models.PositiveIntegerField(default=0)
    ttft_7 = models.PositiveIntegerField(default=0)

    TTFT_BUCKETS_MS = (250, 500, 1000, 2000, 4000, 8000, None)

    class Meta:
        ordering = ["-day", "model", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "model"], name="one_usage_a_model_a_day")
        ]
        verbose_name_plural = "model usage"

    def __str__(self) -> str:
        return f"{self.user} with {self.model} on {self.day}"


class ModelAccess(models.Model):
    """An operator keeps a model to some groups: only their members see it and may use it.
    A model with no row (or a row with no groups) is everyone's."""

    model = models.CharField(max_length=200, unique=True, help_text="A model id of AGENT_MODELS.")
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="models_allowed")

    class Meta:
        verbose_name = "model access"
        verbose_name_plural = "model access"

    def __str__(self) -> str:
        return self.model


class Preferences(models.Model):
    """What a user chose that outlives a thread: the model a new thread takes, their own
    instructions to the agent (added to AGENT_INSTRUCTIONS for every new reply) and the
    page's theme."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "As the system"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences"
    )
    model = models.CharField(max_length=200, blank=True, default="")
    # At most USER_INSTRUCTIONS_CHARS (checked where they are set: services.preferences_set).
    instructions = models.TextField(blank=True, default="")
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user}"


class Feedback(models.Model):
    """A user's rating of a reply (up or down), with tags and a comment: one per reply, its
    owner's, replaced by the next and removed by a null rating."""

    class Rating(models.TextChoices):
        UP = "up"
        DOWN = "down"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback"
    )
    rating = models.CharField(max_length=8, choices=Rating.choices, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "feedback"

    def __str__(self) -> str:
        return f"{self.rating} on {self.message_id}"


class Attachment(models.Model):
    """A file a user uploaded (chat/attachments.py says what it is), sent with one of their
    messages, or waiting to be (removed after a day if never sent)."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        TEXT = "text"
        DOCUMENT = "document"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    name = models.CharField(max_length=200)
    mime_type = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    size = models.PositiveBigIntegerField()
    # Its name in STORAGES["attachments"] (services.py): its owner's id and its own, never the
    # client's file name.
    path = models.CharField(max_length=300)
    # A text's or PDF's text as the model is given it (cut to ATTACHMENT_TEXT_CHARS).
    text = models.TextField(blank=True, default="")
    text_cut = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name


class Share(models.Model):
    """A read-only snapshot of a thread's active path, for anyone with its link (`/s/<token>/`).

    The snapshot is a copy made when shared (`messages`: only what a reader may see), so later
    edits, continues or messages never change it; it dies with its thread, and revoking deletes it.
    """

    token = models.CharField(max_length=64, unique=True)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="shares")
    # The last message of the snapshot (its id, not a key: the snapshot outlives its changes).
    up_to = models.UUIDField()
    title = models.CharField(max_length=200, blank=True, default="")
    messages = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Share of {self.thread}"


class Invite(models.Model):
    """A single-use link an operator makes (the admin, `manage.py invite`): whoever opens it
    before it expires may make one account, even while sign-up is closed. Only the SHA-256 of
    its token is kept; the link is shown once, when it is made."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    note = models.CharField(
        max_length=200, blank=True, default="", help_text="Who it is for (only operators see it)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invites_made",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invite",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invite {self.note or self.pk}"
