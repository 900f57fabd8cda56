"""Django admin for moderating threads: messages inline, metrics read-only."""

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages

from chat.engine import generation
from chat.models import Message, ReplyInFlight, Thread, TokenUsage

METRIC_FIELDS = ("token_count", "first_token_ms", "elapsed_ms")


class MessageInline(admin.TabularInline):
    """A thread's messages, oldest first."""

    model = Message
    extra = 0
    fields = (
        "role",
        "status",
        "content",
        "model",
        "error_code",
        *METRIC_FIELDS,
        "created_at",
    )
    readonly_fields = ("status", "model", "error_code", *METRIC_FIELDS, "created_at")
    ordering = ("created_at",)
    show_change_link = True


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    """Threads: search by title, owner or message text; filter by status, owner and date."""

    list_display = ("__str__", "owner", "message_count", "created_at", "updated_at")
    list_filter = ("messages__status", "owner", "created_at", "updated_at")
    search_fields = ("title", "owner__username", "messages__content")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "created_at", "updated_at")
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

    list_display = ("user", "day", "used", "reserved", "remaining")
    list_filter = ("day",)
    search_fields = ("user__username",)
    date_hierarchy = "day"
    readonly_fields = ("user", "day", "reserved")

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="remaining")
    def remaining(self, obj: TokenUsage) -> str:
        budget = settings.DAILY_TOKEN_BUDGET
        if budget <= 0:
            return "no budget"
        return str(max(budget - obj.used - obj.reserved, 0))
