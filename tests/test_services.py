"""services.py: each write in one transaction, refused whole when it is wrong, and announced to
the thread's and its owner's subscribers only after it commits."""

import uuid

import pytest
from django.db import transaction

from chat import selectors, services
from chat.errors import ChatError
from chat.models import Message, Thread
from tests.helpers import make_thread

pytestmark = pytest.mark.django_db(transaction=True)


def ask(**fields) -> services.Ask:
    return services.Ask(client_id=uuid.uuid4(), **fields)


def begin(thread: Thread, the_ask: services.Ask) -> services.Begun:
    return services.reply_open(ask=the_ask, thread_id=thread.id, reply_id=uuid.uuid4(), model="m")


def test_a_new_message_and_its_reply_are_written_together_and_title_the_thread(alice):
    thread = make_thread(alice)
    begun = begin(thread, ask(text="Hello there, model"))
    assert begun.user_message.content == "Hello there, model"
    assert begun.reply.status == "streaming" and begun.removed_ids == []
    assert Thread.objects.get(pk=thread.pk).title == "Hello there, model"


def test_regenerate_edit_and_retry_remove_what_they_replace_and_nothing_when_refused(alice):
    thread = make_thread(alice, "t", "q1", "a1", "q2", "a2")
    q1, a1, q2, a2 = thread.messages.order_by("created_at", "id")

    with pytest.raises(ChatError):  # only the last user message can be edited
        begin(thread, ask(text="x", edited_id=q1.id))
    with pytest.raises(ChatError):  # a retry answers a user message
        begin(thread, ask(retry_after=a1.id))
    assert thread.messages.count() == 4, "a refused ask removes nothing"

    assert begin(thread, ask(regenerate=True)).removed_ids == [str(a2.id)]
    with pytest.raises(ChatError):  # the new reply is still being written
        begin(thread, ask(regenerate=True))
    Message.objects.filter(status="streaming").update(status="complete")

    edited = begin(thread, ask(text="q2 again", edited_id=q2.id))
    assert str(q2.id) in edited.removed_ids and edited.user_message.content == "q2 again"
    Message.objects.filter(status="streaming").update(status="complete")

    retried = begin(thread, ask(retry_after=q1.id))
    assert str(a1.id) in retried.removed_ids
    assert [m.content for m in thread.messages.order_by("created_at", "id")][:1] == ["q1"]
    thread.refresh_from_db()
    assert selectors.active_path(thread=thread) == list(thread.messages.order_by("created_at")), (
        "each new message follows the one before it, and the last reply is the active leaf"
    )


def test_a_repeated_command_is_refused_before_it_removes_anything(alice):
    thread = make_thread(alice, "t", "q", "a")
    again = ask(regenerate=True)
    begin(thread, again)
    Message.objects.filter(status="streaming").update(status="complete")
    before = list(thread.messages.values_list("id", flat=True))
    with pytest.raises(services.AlreadySent):
        begin(thread, again)
    assert list(thread.messages.values_list("id", flat=True)) == before


def test_a_rename_refuses_text_that_cannot_be_stored_and_announces_only_after_commit(
    alice, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        services.broadcast, "_publish_from_sync", lambda topics, frame: sent.append(frame)
    )
    thread = make_thread(alice, "kept")
    with pytest.raises(ChatError):
        services.thread_rename(thread=thread, title="bad\x00title")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.thread_rename(thread=thread, title="rolled back")
        raise RuntimeError("the transaction fails after the rename")
    assert sent == [], "nothing is announced for a write that did not commit"
    services.thread_rename(thread=Thread.objects.get(pk=thread.pk), title="renamed")
    assert [f["thread"]["title"] for f in sent] == ["renamed"]
    services.thread_delete(thread=Thread.objects.get(pk=thread.pk))
    assert sent[-1]["type"] == "thread_deleted" and sent[-1]["thread_id"] == str(thread.id)
