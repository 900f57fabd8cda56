"""API representations: the same message and thread objects as the WebSocket frames."""

from rest_framework import serializers

from chat import frames
from chat.models import Message, Thread


class ThreadSerializer(serializers.ModelSerializer):
    """A thread; only the title is writable."""

    class Meta:
        model = Thread
        fields = ["id", "title", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class MessageSerializer(serializers.ModelSerializer):
    """The message object of docs/protocol.md, shaped by the same function as the frames."""

    class Meta:
        model = Message
        fields = ["id", "role", "content", "status", "client_id", "created_at"]

    def to_representation(self, instance: Message) -> dict:
        return frames.message_object(instance)
