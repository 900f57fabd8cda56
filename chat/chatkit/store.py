"""The `openai-chatkit` package's `Store` on our own models, for one user at a time.

Threads and messages are the rows the page, the API and the admin show. Every method is
scoped to the requesting user (`RequestContext`): another user's thread or message is not
found, as it is everywhere else.

Writes are the engine's. A new message, and a new thread with it, is committed together with
its reply, in the one transaction every reply begins with, before anything reaches the
client (chat/chatkit/server.py, `_ask`), so a refused message leaves nothing behind:
`save_thread` only renames, and `add_thread_item` stores nothing. A finished reply the
package hands back is already saved, by the engine. Nothing leaves a thread but with it: a
retry (like an edit or a regenerate) begins a new branch beside what it answers anew, and the
thread's items are its active path, so `delete_thread_item` removes nothing and a refused
retry loses no reply.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import (
    AssistantMessageItem,
    Attachment,
    Page,
    SDKHiddenContextItem,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
)
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from chat import outage, selectors, services
from chat.chatkit import items
from chat.engine import generation, ownership
from chat.models import Attachment as Upload
from chat.models import Message, Thread

MAX_PAGE = 100


@dataclass
class RequestContext:
    """Who asks, and what one `POST /api/chatkit` request carries between the package's calls."""

    user: AbstractBaseUser
    time_zone: str | None = None
    # The site as the request reached it ("https://chat.example.com/"): ChatKit wants absolute
    # URLs for an attachment's upload and preview.
    base_url: str = "http://localhost/"
    # The client secret the request came with, if any: the upload of an attachment carries it.
    secret: str = ""
    # The engine's reply this request streams, so a dropped request stops that reply only.
    thread_id: str | None = None
    reply_id: str | None = None
    # The title the engine gave the new thread of this request, with its first message: the
    # package then hands it to `save_thread`, which has nothing to write.
    saved_title: str | None = None
    # The response's own queue, for an event encoded already (a reply's text delta, sent past
    # the package's event loop: server.py's `TextDeltas`); set by api/chatkit.py's pump.
    send_now: Callable[[bytes], None] | None = None

    @property
    def user_id(self) -> int:
        return self.user.pk

    def stop_reply(self) -> None:
        """Stop the reply this request streams, if it still runs (never a later one). The
        engine keeps the text shown and saves it as `cancelled`."""
        if self.thread_id is not None and self.reply_id is not None:
            ownership.registry().stop_local(self.thread_id, reply_id=self.reply_id)


class Unsupported(Exception):
    """A ChatKit feature this backend does not offer (widgets, client tools, dictation)."""


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFoundError(f"No such id: {value!r}.") from None


def _thread(user: AbstractBaseUser, thread_id: str) -> Thread:
    thread = selectors.thread_get_for_user(user=user, thread_id=thread_id)
    if thread is None:
        raise NotFoundError("No such thread.")
    return thread


def _load_thread(*, user: AbstractBaseUser, thread_id: str) -> ThreadMetadata:
    return items.thread_metadata(_thread(user, thread_id))


def _save_thread(*, user: AbstractBaseUser, thread: ThreadMetadata) -> None:
    """A rename of the user's own thread. Threads are made only by the engine, with their
    first message (a thread deleted meanwhile is not made again)."""
    services.thread_rename(thread=_thread(user, thread.id), title=thread.title or "")


def _load_threads(*, user: AbstractBaseUser, limit: int, after: str | None, order: str) -> Page:
    threads = Thread.objects.filter(owner=user)
    newest_first = order != "asc"
    if after:
        mark = selectors.thread_get_for_user(user=user, thread_id=after)
        if mark is None:
            raise NotFoundError("No such thread to page after.")
        threads = threads.filter(_beyond(mark, "updated_at", forward=not newest_first))
    rows = list(threads.order_by(*_order("updated_at", forward=not newest_first))[: limit + 1])
    return _page([items.thread_metadata(t) for t in rows], limit)


def _messages(*, user: AbstractBaseUser, thread_id: str, limit: int, after: str | None, order: str):
    thread = _thread(user, thread_id)
    # The thread's items are its active path: the branch it shows (a retry makes a new one).
    messages = Message.objects.filter(pk__in=selectors.path_ids(thread=thread)[0]).exclude(
        role=Message.Role.SYSTEM
    )
    oldest_first = order == "asc"
    if after:
        mark = thread.messages.filter(pk=_uuid(after)).first()
        if mark is None:
            raise NotFoundError("No such item to page after.")
        messages = messages.filter(_beyond(mark, "created_at", forward=oldest_first))
    ordered = messages.order_by(*_order("created_at", forward=oldest_first))
    return list(ordered.prefetch_related("attachments")[: limit + 1])


def _beyond(mark: Thread | Message, field: str, *, forward: bool) -> Q:
    """The rows after `mark` in (`field`, id) order (`forward`), or before it: a page's
    cursor is its last row's id."""
    value, op = getattr(mark, field), "gt" if forward else "lt"
    return Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"id__{op}": mark.id})


def _order(field: str, *, forward: bool) -> tuple[str, str]:
    return (field, "id") if forward else (f"-{field}", "-id")


def _page(data: list, limit: int) -> Page:
    more = len(data) > limit
    data = data[:limit]
    return Page(data=data, has_more=more, after=data[-1].id if more and data else None)


def _load_item(*, user: AbstractBaseUser, thread_id: str, item_id: str) -> Message:
    messages = _thread(user, thread_id).messages.prefetch_related("attachments")
    message = messages.filter(pk=_uuid(item_id)).first()
    if message is None:
        raise NotFoundError("No such item.")
    return message


def _delete_thread(*, user: AbstractBaseUser, thread_id: str) -> None:
    services.thread_delete(thread=_thread(user, thread_id))


class DjangoStore(Store[RequestContext]):
    """ChatKit's storage calls, answered from our tables (see the module's docstring)."""

    def generate_thread_id(self, context: RequestContext) -> str:
        return str(uuid.uuid4())

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: RequestContext
    ) -> str:
        return str(uuid.uuid4())

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        return await outage.db(
            f"loading thread {thread_id}",
            _load_thread,
            user=context.user,
            thread_id=thread_id,
        )

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        if context.saved_title is not None and thread.title == context.saved_title:
            return  # the engine's own title, saved with the thread: no trip to the database
        await outage.db(
            f"saving thread {thread.id}", _save_thread, user=context.user, thread=thread
        )

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        return await outage.db(
            "listing threads",
            _load_threads,
            user=context.user,
            limit=_limit(limit),
            after=after,
            order=order,
        )

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: RequestContext
    ) -> Page[ThreadItem]:
        limit = _limit(limit)
        rows = await outage.db(
            f"loading the items of thread {thread_id}",
            _messages,
            user=context.user,
            thread_id=thread_id,
            limit=limit,
            after=after,
            order=order,
        )
        live = await _live_text(thread_id, rows)
        shown = [
            items.item_of(m, live_text=live.get(str(m.id)), base_url=context.base_url) for m in rows
        ]
        return _page([item for item in shown if item is not None], limit)

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        message = await outage.db(
            f"loading item {item_id}",
            _load_item,
            user=context.user,
            thread_id=thread_id,
            item_id=item_id,
        )
        live = await _live_text(thread_id, [message])
        item = items.item_of(
            message, live_text=live.get(str(message.id)), base_url=context.base_url
        )
        if item is None:
            raise NotFoundError("No such item.")
        return item

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: RequestContext
    ) -> None:
        if isinstance(item, (UserMessageItem, AssistantMessageItem, SDKHiddenContextItem)):
            pass  # the engine saved it, with its reply (a stopped one's text as it was shown)
        else:
            raise Unsupported(f"This backend does not store {item.type} items.")

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        raise Unsupported(
            "Items are saved by the replies that write them; they cannot be replaced."
        )

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        pass  # nothing leaves a thread: a retry makes a new branch beside what it retries

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        await self.load_thread(thread_id, context)  # the user's, or not found
        await generation.reply_stop(thread_id=thread_id)  # a deleted thread stops writing
        await outage.db(
            f"deleting thread {thread_id}",
            _delete_thread,
            user=context.user,
            thread_id=thread_id,
        )

    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        pass  # written by our attachment store (attachments.py) and, when sent, by the engine

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        upload = await outage.db(
            f"loading attachment {attachment_id}",
            _load_attachment,
            user=context.user,
            attachment_id=attachment_id,
        )
        thread_id = str(upload.message.thread_id) if upload.message_id else None
        return items.attachment_of(upload, base_url=context.base_url, thread_id=thread_id)

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        pass  # our attachment store removed the row with its file


def _load_attachment(*, user: AbstractBaseUser, attachment_id: str) -> Upload:
    upload = (
        Upload.objects.select_related("message").filter(pk=_uuid(attachment_id), owner=user).first()
    )
    if upload is None:
        raise NotFoundError("No such attachment.")
    return upload


def _limit(limit: Any) -> int:
    return max(1, min(int(limit or 20), MAX_PAGE))


async def _live_text(thread_id: str, rows: list[Message]) -> dict[str, str]:
    """The text shown so far of a reply among `rows` still streaming (its saved text is
    only the last checkpoint)."""
    if not any(m.status == Message.Status.STREAMING for m in rows):
        return {}
    active = await generation.thread_snapshot(thread_id=thread_id)
    return {active["message_id"]: active["content"]} if active else {}
