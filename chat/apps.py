"""The chat app."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Threads, messages and the streaming of agent replies."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import standing
        from chat.api import schema  # noqa: F401  (registers the OpenAPI auth extension)

        standing.connect_signals()
