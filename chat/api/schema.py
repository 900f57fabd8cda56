"""OpenAPI for the streaming endpoints, which are plain async views that DRF cannot see."""

import warnings
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

_ERRORS = {
    "400": {"description": "Bad request (an `error` frame)"},
    "401": {"description": "Not logged in and no valid Bearer client secret"},
    "403": {"description": "Session request without a CSRF token"},
    "404": {"description": "No such thread (or not yours)"},
    "409": {"description": "A reply is already running in this thread (`busy`)"},
    "413": {"description": "Message longer than MAX_MESSAGE_CHARS (`too_large`)"},
    "429": {"description": "Too many replies this minute (`rate_limited`)"},
}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def _stream_body(required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": required,
                    "properties": {
                        "command": {"type": "string", "enum": ["start", "continue"]},
                        "message": {"type": "string", "minLength": 1},
                        "message_id": {
                            "type": "string",
                            "format": "uuid",
                            "description": "`continue`: the thread's last reply, truncated",
                        },
                        "thread_id": {"type": "string", "format": "uuid"},
                        "client_id": {"type": "string", "format": "uuid"},
                    },
                }
            }
        },
    }


def add_streaming_paths(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: document the SSE endpoints."""
    security = [{"cookieAuth": []}, {"bearerAuth": []}]
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.setdefault("bearerAuth", {"type": "http", "scheme": "bearer"})
    paths = result.setdefault("paths", {})
    paths["/api/stream/message"] = {
        "post": {
            "operationId": "stream_message",
            "summary": "Send a message and stream the reply (SSE, `id:` = seq)",
            "tags": ["stream"],
            "requestBody": _stream_body([]),  # `message` for a start, `message_id` to continue
            "security": security,
            "responses": {"200": {"description": "The reply's frames", "content": _SSE}, **_ERRORS},
        }
    }
    paths["/api/stream/chatkit"] = {
        "post": {
            "operationId": "stream_chatkit",
            "summary": "ChatKit-style streaming handler for an existing thread (SSE)",
            "tags": ["stream"],
            "requestBody": _stream_body(["message", "thread_id"]),
            "security": security,
            "responses": {"200": {"description": "The reply's frames", "content": _SSE}, **_ERRORS},
        }
    }
    paths["/api/attachments/"] = {
        "post": {
            "operationId": "attachments_create",
            "summary": "Upload a file to send with a message (its type from its bytes)",
            "tags": ["attachments"],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    }
                },
            },
            "security": security,
            "responses": {
                "201": {"description": "The attachment object (docs/protocol.md)"},
                "413": {"description": "Over MAX_UPLOAD_BYTES"},
                "415": {"description": "A type no model can be given, or named as another"},
                **_ERRORS,
            },
        }
    }
    paths["/api/chatkit"] = _chatkit_path(security, schemes=result["components"])
    paths["/api/threads/{id}/events/"] = {
        "get": {
            "operationId": "thread_events",
            "summary": "The thread's frames as an EventSource, resumable with Last-Event-ID",
            "tags": ["stream"],
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "security": security,
            "responses": {"200": {"description": "Frames, forever", "content": _SSE}, **_ERRORS},
        }
    }
    return result


def _chatkit_path(security: list[dict[str, Any]], *, schemes: dict[str, Any]) -> dict[str, Any]:
    """`POST /api/chatkit`: its request types from the openai-chatkit package itself."""
    from chatkit.types import ChatKitReq
    from pydantic import TypeAdapter

    with warnings.catch_warnings():  # a generic default the package's schema cannot show
        warnings.simplefilter("ignore")
        request = TypeAdapter(ChatKitReq).json_schema(
            ref_template="#/components/schemas/ChatKit{model}"
        )
    components = schemes.setdefault("schemas", {})
    for name, definition in request.pop("$defs", {}).items():
        components[f"ChatKit{name}"] = definition
    return {
        "post": {
            "operationId": "chatkit",
            "summary": "The ChatKit server protocol: JSON for reads, SSE (ChatKit events) for "
            "thread.create, add_user_message and retry_after_item (docs/chatkit.md)",
            "tags": ["chatkit"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "security": security,
            "responses": {
                "200": {
                    "description": "A JSON answer, or a stream of ChatKit events",
                    "content": {"application/json": {"schema": {"type": "object"}}, **_SSE},
                },
                "400": _ERRORS["400"],
                "401": _ERRORS["401"],
                "403": _ERRORS["403"],
                "404": {"description": "No such thread or item (or not yours)"},
            },
        }
    }


class ClientSecretScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular that the API takes `Authorization: Bearer <client secret>`."""

    target_class = "chat.auth.ClientSecretAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "POST /api/chatkit/session"}
