"""The chat app."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Threads, messages and the streaming of agent replies."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"
