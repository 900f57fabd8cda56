"""Django admin: threads to moderate (messages inline, metrics read-only), replies in flight,
feedback with its CSV export, who may use which model, token usage per user, model and day,
uploads, shares (revocable) and invite links."""

import csv
import datetime

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from chat import frames, model_choice, services, usage_report
from chat.models import (
    Attachment,
    Feedback,
    Invite,
    Message,
    ModelAccess,
    ModelUsage,
    ReplyInFlight,
    Share,
    Thread,
    TokenUsage,
)

METRIC_FIELDS = ("token_count", "first_token_ms", "elapsed_ms")


class MessageInline(admin.TabularInline):
    """A thread's messages, every branch, oldest first: each with its short id and the one
    it follows (the tree: an edit or a regenerate adds a sibling beside what it answers)."""

    model = Message
    extra = 0
    fields = (
        "short_id",
        "follows",
        "role",
        "status",
        "content",
        "model",
        "error_code",
        *METRIC_FIELDS,
        "created_at",
    )
    readonly_fields = (
        "short_id",
        "follows",
        "status",
        "model",
        "error_code",
        *METRIC_FIELDS,
        "created_at",
    )
    ordering = ("created_at",)
    show_change_link = True

    @admin.display(description="id")
    def short_id(self, obj: Message) -> str:
        return str(obj.id)[:8] if obj.pk else ""

    @admin.display(description="follows")
    def follows(self, obj: Message) -> str:
        """The parent's short id (no query: the id is on the row); "—" for the first."""
        return str(obj.parent_id)[:8] if obj.parent_id else "—"


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    """Threads: search by title, owner or message text; filter by status, owner and date."""

    list_display = ("__str__", "owner", "message_count", "created_at", "updated_at")
    list_filter = ("messages__status", "owner", "created_at", "updated_at")
    search_fields = ("title", "owner__username", "messages__content")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "active_leaf", "created_at", "updated_at")
    inlines = [MessageInline]
    list_select_related = ("owner",)

    @admin.display(description="messages")
    def message_count(self, obj: Thread) -> int:
        return obj.messages.count()

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages, for finding replies by status across threads."""

    list_display = (
        "id",
        "thread",
        "role",
        "status",
        "model",
        *METRIC_FIELDS,
        "created_at",
    )
    list_filter = ("status", "role", "created_at")
    search_fields = ("content", "thread__title")
    readonly_fields = (
        "id",
        "thread",
        "parent",
        "client_id",
        *METRIC_FIELDS,
        "created_at",
        "completed_at",
    )
    list_select_related = ("thread",)


@admin.register(ReplyInFlight)
class ReplyInFlightAdmin(admin.ModelAdmin):
    """Replies being written right now, with a force-stop for the stuck or unwanted."""

    list_display = ("id", "thread", "model", "created_at", "content_length")
    list_select_related = ("thread",)
    actions = ["force_stop"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=Message.Status.STREAMING)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="characters saved")
    def content_length(self, obj: Message) -> int:
        return len(obj.content)

    @admin.action(description="Force-stop the selected replies")
    def force_stop(self, request, queryset) -> None:
        """Stop each reply on whichever process runs it; one whose process died is interrupted."""
        # Imported here: the engine pulls in the agents SDK (about 2 s of CPU), and every
        # `manage.py` command loads this module (migrate, shell, createsuperuser).
        from chat.engine import generation

        stopped = interrupted = 0
        for reply in queryset:
            if async_to_sync(generation.reply_force_stop)(
                thread_id=str(reply.thread_id), reply_id=reply.id
            ):
                stopped += 1
            else:
                interrupted += 1
        self.message_user(
            request,
            f"{stopped} stop request(s) sent; {interrupted} orphaned repl(ies) marked interrupted.",
            messages.SUCCESS,
        )


@admin.register(TokenUsage)
class TokenUsageAdmin(admin.ModelAdmin):
    """Output tokens per user and UTC day against DAILY_TOKEN_BUDGET; an operator may lower
    `used` to give a user more for the day."""

    list_display = ("user", "day", "used", "reserved", "remaining", "input_used")
    list_filter = ("day",)
    search_fields = ("user__username",)
    date_hierarchy = "day"
    readonly_fields = ("user", "day", "reserved", "input_used")

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="remaining")
    def remaining(self, obj: TokenUsage) -> str:
        budget = settings.DAILY_TOKEN_BUDGET
        if budget <= 0:
            return "no budget"
        return str(max(budget - obj.used - obj.reserved, 0))


class ModelFilter(admin.SimpleListFilter):
    """By the model that wrote the reply."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        models = Message.objects.filter(feedback__isnull=False).values_list("model", flat=True)
        return [(m, m) for m in sorted(set(models)) if m]

    def queryset(self, request, queryset):
        return queryset.filter(message__model=self.value()) if self.value() else queryset


# The columns of the feedback CSV export, in order.
FEEDBACK_CSV_COLUMNS = (
    "updated_at",
    "user",
    "rating",
    "tags",
    "comment",
    "model",
    "thread_id",
    "message_id",
    "status",
    "tokens",
    "first_token_ms",
    "elapsed_ms",
    "reply",
)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings of replies, with the reply, its model and metrics, and its thread; filtered by
    rating, model and date, and exported as CSV."""

    list_display = (
        "updated_at",
        "user",
        "rating",
        "tag_list",
        "comment",
        "model",
        "reply_excerpt",
        "tokens",
        "elapsed_ms",
        "thread_link",
    )
    list_filter = ("rating", ModelFilter, "updated_at")
    search_fields = ("comment", "message__content", "user__username")
    date_hierarchy = "updated_at"
    list_select_related = ("user", "message")
    readonly_fields = ("message", "user", "created_at", "updated_at")
    actions = ["export_csv"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="tags")
    def tag_list(self, obj: Feedback) -> str:
        return ", ".join(obj.tags or [])

    @admin.display(description="model", ordering="message__model")
    def model(self, obj: Feedback) -> str:
        return obj.message.model

    @admin.display(description="reply")
    def reply_excerpt(self, obj: Feedback) -> str:
        text = obj.message.content
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="tokens")
    def tokens(self, obj: Feedback) -> int | None:
        return obj.message.token_count

    @admin.display(description="elapsed ms")
    def elapsed_ms(self, obj: Feedback) -> int | None:
        return obj.message.elapsed_ms

    @admin.display(description="thread")
    def thread_link(self, obj: Feedback) -> str:
        url = reverse("admin:chat_thread_change", args=[obj.message.thread_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.message.thread_id)[:8])

    @admin.action(description="Export the selected feedback as CSV")
    def export_csv(self, request, queryset) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="feedback.csv"'
        writer = csv.writer(response)
        writer.writerow(FEEDBACK_CSV_COLUMNS)
        for given in queryset.select_related("user", "message").order_by("-updated_at"):
            reply = given.message
            writer.writerow(
                _csv_safe(value)
                for value in (
                    given.updated_at.isoformat(),
                    given.user.get_username(),
                    given.rating,
                    "; ".join(given.tags or []),
                    given.comment,
                    reply.model,
                    reply.thread_id,
                    reply.id,
                    reply.status,
                    reply.token_count,
                    reply.first_token_ms,
                    reply.elapsed_ms,
                    reply.content,
                )
            )
        return response


def _csv_safe(value: object) -> object:
    """A cell a spreadsheet will not run as a formula (text from users and models)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


@admin.register(ModelAccess)
class ModelAccessAdmin(admin.ModelAdmin):
    """Keep a model to some groups: only their members see it and may use it (on every
    transport); a model with no groups here is everyone's."""

    list_display = ("model", "group_names")
    filter_horizontal = ("groups",)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        model_choice.forget_access()  # this process at once; the others within 5 s

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        model_choice.forget_access()

    @admin.display(description="groups")
    def group_names(self, obj: ModelAccess) -> str:
        return ", ".join(g.name for g in obj.groups.all()) or "everyone"


@admin.register(ModelUsage)
class ModelUsageAdmin(admin.ModelAdmin):
    """Tokens per user, model and UTC day, input and output apart (input is most of a bill)."""

    list_display = ("day", "model", "user", "input_tokens", "output_tokens", "replies", "errors")
    list_filter = ("model", "day")
    search_fields = ("user__username", "model")
    date_hierarchy = "day"
    list_select_related = ("user",)
    change_list_template = "admin/chat/modelusage/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard),
            name="chat_modelusage_dashboard",
        )
        return [dashboard, *super().get_urls()]

    def dashboard(self, request) -> HttpResponse:
        """Tokens, replies, errors and median time to first token per day, user or model over
        a range of days, from the ledger; `?format=csv` exports the table."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        today = datetime.datetime.now(datetime.UTC).date()
        start = _date(request.GET.get("start"), today - datetime.timedelta(days=29))
        end = _date(request.GET.get("end"), today)
        by = request.GET.get("by", "day")
        if by not in usage_report.GROUPINGS:
            by = "day"
        rows, total = usage_report.report(start=start, end=end, by=by)
        if request.GET.get("format") == "csv":
            return _usage_csv(rows, total, by)
        widest = max((r.tokens for r in rows), default=0) or 1
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage dashboard",
            "opts": self.model._meta,
            "rows": [
                (r, round(300 * r.input_tokens / widest), round(300 * r.output_tokens / widest))
                for r in rows
            ],
            "total": total,
            "start": start,
            "end": end,
            "by": by,
            "groupings": list(usage_report.GROUPINGS),
        }
        return TemplateResponse(request, "admin/chat/usage_dashboard.html", context)


def _date(text: str | None, default: datetime.date) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text) if text else default
    except ValueError:
        return default


USAGE_CSV_COLUMNS = ("input_tokens", "output_tokens", "replies", "errors", "median_ttft_ms")


def _usage_csv(rows, total, by: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-by-{by}.csv"'
    writer = csv.writer(response)
    writer.writerow((by, *USAGE_CSV_COLUMNS))
    for row in [*rows, total]:
        writer.writerow(
            _csv_safe(v) for v in (row.key, *(getattr(row, column) for column in USAGE_CSV_COLUMNS))
        )
    return response


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Uploads: owner, type, size and the message they went with; removing one removes its
    file from the storage too."""

    list_display = ("name", "owner", "kind", "mime_type", "size", "message_link", "created_at")
    list_filter = ("kind", "mime_type", "created_at")
    search_fields = ("name", "owner__username")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "message")
    readonly_fields = (
        "id",
        "owner",
        "message",
        "name",
        "mime_type",
        "kind",
        "size",
        "path",
        "text_cut",
        "created_at",
    )
    exclude = ("text",)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="message")
    def message_link(self, obj: Attachment) -> str:
        if obj.message_id is None:
            return "not sent"
        url = reverse("admin:chat_thread_change", args=[obj.message.thread_id])
        return format_html('<a href="{}">thread {}</a>', url, str(obj.message.thread_id)[:8])

    def delete_model(self, request, obj: Attachment) -> None:
        services.attachment_delete(attachment=obj)

    def delete_queryset(self, request, queryset) -> None:
        for attachment in queryset:
            services.attachment_delete(attachment=attachment)


class ExpiredFilter(admin.SimpleListFilter):
    """Live shares, or expired ones (they answer 404 until the sweeper removes them)."""

    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return [("yes", "Expired"), ("no", "Live")]

    def queryset(self, request, queryset):
        expired = Q(expires_at__lte=timezone.now())
        if self.value() == "yes":
            return queryset.filter(expired)
        if self.value() == "no":
            return queryset.exclude(expired)
        return queryset


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    """Read-only links to snapshots of threads: whose thread, when made, when they expire, the
    link itself; revoking one (the action, or deleting it) makes its link a 404."""

    list_display = ("__str__", "thread_link", "owner", "created_at", "expires_at", "page_link")
    list_filter = (ExpiredFilter, "created_at")
    search_fields = ("title", "thread__owner__username", "token")
    date_hierarchy = "created_at"
    list_select_related = ("thread", "thread__owner")
    readonly_fields = ("token", "thread", "up_to", "title", "messages", "created_at", "expires_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="thread")
    def thread_link(self, obj: Share) -> str:
        url = reverse("admin:chat_thread_change", args=[obj.thread_id])
        return format_html('<a href="{}">{}</a>', url, obj.thread)

    @admin.display(description="owner", ordering="thread__owner__username")
    def owner(self, obj: Share) -> str:
        return str(obj.thread.owner)

    @admin.display(description="link")
    def page_link(self, obj: Share) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">open</a>', frames.share_url(obj.token)
        )

    @admin.action(description="Revoke the selected shares")
    def revoke(self, request, queryset) -> None:
        count = 0
        for share in queryset:
            services.share_revoke(share=share)
            count += 1
        self.message_user(request, f"{count} share(s) revoked.", messages.SUCCESS)


class InviteForm(forms.ModelForm):
    """A new invite: who it is for, and for how many days its link works."""

    days = forms.IntegerField(
        min_value=1, max_value=365, help_text="How many days the link works.", required=True
    )

    class Meta:
        model = Invite
        fields = ("note",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["days"].initial = settings.INVITE_DAYS


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    """Invite one person by a single-use link that expires: it makes one account even while
    sign-up is closed. The link is shown once, when the invite is made (only its hash is kept)."""

    list_display = ("__str__", "state", "created_by", "created_at", "expires_at", "used_by")
    list_filter = ("used_at", "expires_at")
    search_fields = ("note", "used_by__username")
    readonly_fields = ("created_by", "created_at", "expires_at", "used_at", "used_by")
    actions = ("expire_now",)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = InviteForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ("note", "days") if obj is None else ("note", *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.save(update_fields=["note"])
            return
        invite, token = services.invite_create(
            created_by=request.user, note=obj.note, days=form.cleaned_data["days"]
        )
        vars(obj).update(vars(invite))  # the admin goes on with the saved row
        link = request.build_absolute_uri(reverse("invite", args=[token]))
        messages.success(
            request,
            format_html(
                "Invite link (shown this once; it works until {}): <code>{}</code>",
                f"{invite.expires_at:%Y-%m-%d %H:%M} UTC",
                link,
            ),
        )

    @admin.display(description="state")
    def state(self, obj: Invite) -> str:
        if obj.used_at is not None:
            return "used"
        return "expired" if obj.expires_at <= timezone.now() else "open"

    @admin.action(description="Expire the selected invites now")
    def expire_now(self, request, queryset) -> None:
        expired = queryset.filter(used_at=None, expires_at__gt=timezone.now()).update(
            expires_at=timezone.now()
        )
        messages.success(request, f"{expired} invite(s) expired.")
