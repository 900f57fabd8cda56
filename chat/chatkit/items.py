"""Our messages as ChatKit thread items, and a ChatKit user message as our text.

Item ids are our message ids (UUIDs) and thread ids our thread ids, so the page, the API, the
admin and a ChatKit front end all name the same rows. Assistant history never goes back to
the model as ChatKit items (the package's converter sends it as `output_text` parts, which
Chat Completions providers refuse): the engine reads a thread's history from the database.
"""

from datetime import datetime

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    FileAttachment,
    ImageAttachment,
    InferenceOptions,
    ThreadItem,
    ThreadMetadata,
    UserMessageInput,
    UserMessageItem,
    UserMessageTextContent,
)

from chat import frames
from chat.models import Attachment as Upload
from chat.models import Message, Thread


def thread_metadata(thread: Thread) -> ThreadMetadata:
    return ThreadMetadata(
        id=str(thread.id), title=thread.title or None, created_at=thread.created_at
    )


def reply_text(content: str, *, status: str, error_message: str = "") -> str:
    """What a ChatKit front end shows of a reply: its text, or, for a reply that failed
    before writing anything, why (ChatKit items have no status of their own)."""
    if content or status not in (Message.Status.ERROR, Message.Status.INTERRUPTED):
        return content
    return f"_{error_message or 'The reply failed.'}_"


def assistant_item(
    *, item_id: str, thread_id: str, created_at: datetime, content: list[AssistantMessageContent]
) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id, thread_id=thread_id, created_at=created_at, content=content
    )


def attachment_of(upload: Upload, *, base_url: str, thread_id: str | None = None) -> Attachment:
    """One of our attachments as ChatKit shows it: an image with its preview (the owner's
    `GET /api/attachments/<id>/content`, which the browser loads with the session cookie),
    anything else as a file; `thread_id` once it was sent there."""
    fields = {
        "id": str(upload.id),
        "name": upload.name,
        "mime_type": upload.mime_type,
        "thread_id": thread_id,
    }
    if upload.kind == Upload.Kind.IMAGE:
        preview = base_url.rstrip("/") + frames.attachment_object(upload)["url"]
        return ImageAttachment(**fields, preview_url=preview)
    return FileAttachment(**fields)


def item_of(
    message: Message, *, live_text: str | None = None, base_url: str = ""
) -> ThreadItem | None:
    """A saved message as a ChatKit item (a reply still streaming with the text shown so
    far, `live_text`, when known; a user message with its attachments, their previews under
    `base_url`); None for what ChatKit does not show (system messages)."""
    thread_id = str(message.thread_id)
    if message.role == Message.Role.USER:
        return UserMessageItem(
            id=str(message.id),
            thread_id=thread_id,
            created_at=message.created_at,
            content=[UserMessageTextContent(text=message.content)],
            attachments=[
                attachment_of(a, base_url=base_url, thread_id=thread_id)
                for a in message.attachments.all()
            ],
            inference_options=InferenceOptions(),
        )
    if message.role == Message.Role.ASSISTANT:
        text = live_text if live_text is not None else message.content
        return assistant_item(
            item_id=str(message.id),
            thread_id=thread_id,
            created_at=message.created_at,
            content=[
                AssistantMessageContent(
                    text=reply_text(
                        text, status=message.status, error_message=message.error_message
                    )
                )
            ],
        )
    return None


def user_text(item: UserMessageItem | UserMessageInput) -> str:
    """A ChatKit user message as the text we save: its text and @-tags in order, after the
    passage it quotes (as a Markdown quote)."""
    text = "".join(part.text for part in item.content)
    if item.quoted_text:
        quote = "\n".join(f"> {line}" for line in item.quoted_text.splitlines())
        text = f"{quote}\n\n{text}"
    return text
