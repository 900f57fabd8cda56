"""Django admin for moderating threads: messages inline, metrics read-only."""

from django.contrib import admin

from chat.models import Message, Thread

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
