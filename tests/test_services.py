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
    assert begun.reply.status == "streaming" and begun.reply.parent_id == begun.user_message.id
    assert Thread.objects.get(pk=thread.pk).title == "Hello there, model"


def test_regenerate_edit_and_retry_keep_what_they_answer_anew_and_change_nothing_refused(alice):
    thread = make_thread(alice, "t", "q1", "a1", "q2", "a2")
    q1, a1, q2, a2 = thread.messages.order_by("created_at", "id")

    with pytest.raises(ChatError):  # a reply is no message to edit
        begin(thread, ask(text="x", edited_id=a1.id))
    with pytest.raises(ChatError):  # a retry answers a user message
        begin(thread, ask(retry_after=a1.id))
    assert thread.messages.count() == 4, "a refused ask writes nothing"

    regenerated = begin(thread, ask(regenerate=True))
    assert regenerated.reply.parent_id == q2.id, "a sibling of the reply it answers anew"
    assert regenerated.reply.siblings == {
        "index": 1,
        "count": 2,
        "ids": [str(a2.id), str(regenerated.reply.id)],
    }
    with pytest.raises(ChatError):  # the new reply is still being written
        begin(thread, ask(regenerate=True))
    Message.objects.filter(status="streaming").update(status="complete")

    edited = begin(thread, ask(text="q1 again", edited_id=q1.id))  # not the last: any of the path
    assert edited.user_message.parent_id is None and edited.user_message.siblings["count"] == 2
    Message.objects.filter(status="streaming").update(status="complete")
    thread.refresh_from_db()
    assert [m.content for m in selectors.active_path(thread=thread)] == ["q1 again", ""]
    with pytest.raises(ChatError):  # q2 is on another branch now
        begin(thread, ask(text="x", edited_id=q2.id))

    retried = begin(thread, ask(retry_after=edited.user_message.id))
    assert retried.reply.parent_id == edited.user_message.id and retried.user_message is None
    assert thread.messages.count() == 4 + 1 + 2 + 1, "nothing was deleted"


def test_a_repeated_command_is_refused_before_it_writes_anything(alice):
    thread = make_thread(alice, "t", "q", "a")
    again = ask(regenerate=True)
    begin(thread, again)
    Message.objects.filter(status="streaming").update(status="complete")
    before = list(thread.messages.values_list("id", flat=True))
    with pytest.raises(services.AlreadySent):
        begin(thread, again)
    assert list(thread.messages.values_list("id", flat=True)) == before


def test_a_switch_shows_the_chosen_branch_to_its_latest_leaf_and_refuses_what_is_not_the_thread_s(
    alice, bob
):
    thread = make_thread(alice, "t", "q1", "a1", "q2", "a2")
    q1, a1, q2, a2 = thread.messages.order_by("created_at", "id")
    begin(thread, ask(text="q1 again", edited_id=q1.id))
    Message.objects.filter(status="streaming").update(status="complete")
    thread.refresh_from_db()
    new_leaf = thread.active_leaf_id

    switched = services.thread_switch(thread=thread, active_leaf=q1.id)
    assert switched.active_leaf_id == a2.id, "on through its latest descendants"
    other = make_thread(bob, "b", "theirs", "reply")
    for bad in (other.active_leaf_id, "not-a-uuid", uuid.uuid4()):
        with pytest.raises(ChatError) as refused:
            services.thread_switch(thread=thread, active_leaf=bad)
        assert refused.value.code == "bad_request"
    Message.objects.filter(pk=a2.pk).update(status="streaming")
    with pytest.raises(ChatError) as refused:
        services.thread_switch(thread=thread, active_leaf=new_leaf)
    assert refused.value.code == "busy"
    thread.refresh_from_db()
    assert thread.active_leaf_id == a2.id, "a refused switch changes nothing"


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
