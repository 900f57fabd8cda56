"""API representations: the same message and thread objects as the WebSocket frames."""

from rest_framework import serializers

from chat import frames
from chat.models import Message, Thread


class ThreadSerializer(serializers.ModelSerializer):
    """A thread; the title, the model, `pinned` and the branch shown (`active_leaf`) are
    writable (a model the user may not use, or an `active_leaf` that is no message of the
    thread, is a 400 from services)."""

    model = serializers.CharField(required=False, max_length=200)
    pinned = serializers.BooleanField(required=False)
    active_leaf = serializers.UUIDField(source="active_leaf_id", required=False)

    class Meta:
        model = Thread
        fields = ["id", "title", "model", "pinned", "active_leaf", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class FeedbackSerializer(serializers.Serializer):
    """`PUT /api/messages/<id>/feedback/` (the schema; services.feedback_set checks it)."""

    rating = serializers.ChoiceField(choices=["up", "down"], allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=40), required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    updated_at = serializers.DateTimeField(read_only=True)


class ModelSerializer(serializers.Serializer):
    """A model the user may pick (`GET /api/models/`)."""

    id = serializers.CharField()
    label = serializers.CharField()
    provider = serializers.CharField()
    default = serializers.BooleanField()
    vision = serializers.BooleanField()


class MessageSerializer(serializers.ModelSerializer):
    """The message object of docs/protocol.md, shaped by the same function as the frames."""

    class Meta:
        model = Message
        fields = ["id", "role", "content", "status", "client_id", "created_at"]

    def to_representation(self, instance: Message) -> dict:
        return frames.message_object(instance)
