"""selectors.py: reads, each the owner's alone, and the agent's history within its budget."""

import uuid

import pytest

from chat import selectors
from chat.models import Message
from tests.helpers import make_thread

pytestmark = pytest.mark.django_db


def test_a_thread_is_found_only_for_its_owner_and_bad_ids_are_simply_not_found(alice, bob):
    thread = make_thread(alice, "mine")
    assert selectors.thread_get_for_user(user=alice, thread_id=thread.id) == thread
    assert selectors.thread_get_for_user(user=bob, thread_id=thread.id) is None
    for bad in ("not-a-uuid", str(uuid.uuid4()), "\x00"):
        assert selectors.thread_get_for_user(user=alice, thread_id=bad) is None


def test_the_history_keeps_the_newest_messages_that_fit_and_ends_at_the_reply_s_parent(
    alice,
):
    thread = make_thread(alice, "", "first " * 10, "second", "third", "fourth")
    leaf = thread.active_leaf
    Message.objects.create(thread=thread, role="assistant", status="streaming", parent=leaf)
    history = selectors.thread_history(thread_id=thread.id, leaf_id=leaf.id, max_chars=20)
    assert history.left_out == 1, "the first message did not fit"
    assert history.messages == [
        {"role": "assistant", "content": "second"},
        {"role": "user", "content": "third"},
        {"role": "assistant", "content": "fourth"},
    ]
    alone = selectors.thread_history(thread_id=thread.id, leaf_id=leaf.id, max_chars=3)
    assert alone.messages == [{"role": "assistant", "content": "rth"}], "the newest, cut to fit"
    assert alone.left_out == 3


def test_a_threads_first_message_is_its_history_as_the_thread_would_be_read(alice):
    """`opening_history` (no reads) gives what `thread_history` reads, cut alike; a message
    with a parent or with files is left to `thread_history`."""
    for max_chars in (1000, 5):
        thread = make_thread(alice, "", "the first question")
        first = thread.active_leaf
        read = selectors.thread_history(thread_id=thread.id, leaf_id=first.id, max_chars=max_chars)
        assert selectors.opening_history(first, max_chars=max_chars) == read
    assert read.messages == [{"role": "user", "content": "stion"}]
    later = make_thread(alice, "", "one", "two", "three").active_leaf
    assert selectors.opening_history(later, max_chars=1000) is None
    first.attached = ["a file"]
    assert selectors.opening_history(first, max_chars=1000) is None
    assert selectors.opening_history(None, max_chars=1000) is None


def test_the_history_is_the_path_to_its_leaf_and_never_another_branch(alice):
    thread = make_thread(alice, "", "q1", "a1", "q2", "a2")
    q1, a1, q2, a2 = selectors.active_path(thread=thread)
    other = Message.objects.create(thread=thread, role="user", content="q2 edited", parent=a1)
    history = selectors.thread_history(thread_id=thread.id, leaf_id=other.id, max_chars=1000)
    assert [m["content"] for m in history.messages] == ["q1", "a1", "q2 edited"]
    history = selectors.thread_history(thread_id=thread.id, leaf_id=a2.id, max_chars=1000)
    assert [m["content"] for m in history.messages] == ["q1", "a1", "q2", "a2"]


def test_siblings_count_the_versions_at_a_place_oldest_first(alice):
    thread = make_thread(alice, "", "q", "a1")
    q, a1 = selectors.active_path(thread=thread)
    a2 = Message.objects.create(thread=thread, role="assistant", content="a2", parent=q)
    tree = selectors.thread_tree(thread_id=thread.id)
    assert tree.siblings(a1.id) == {"index": 0, "count": 2, "ids": [str(a1.id), str(a2.id)]}
    assert tree.siblings(a2.id)["index"] == 1
    assert tree.siblings(q.id) == {"index": 0, "count": 1, "ids": [str(q.id)]}
    assert tree.leaf_under(q.id) == a2.id, "the latest descendant"


def test_a_repeated_send_finds_the_reply_that_answered_it(alice):
    thread = make_thread(alice)
    asked = Message.objects.create(thread=thread, role="user", content="q", client_id=uuid.uuid4())
    reply = Message.objects.create(thread=thread, role="assistant", status="complete", parent=asked)
    assert selectors.reply_to_send(thread_id=thread.id, client_id=asked.client_id) == reply
    assert selectors.reply_to_send(thread_id=thread.id, client_id=uuid.uuid4()) is None


def test_the_active_path_runs_from_the_first_message_to_the_leaf_and_leaves_other_branches_out(
    alice,
):
    thread = make_thread(alice, "", "q", "a1")
    question, first = selectors.active_path(thread=thread)
    second = Message.objects.create(thread=thread, role="assistant", content="a2", parent=question)
    assert [m.content for m in selectors.active_path(thread=thread)] == ["q", "a1"]
    thread.active_leaf = second
    assert [m.content for m in selectors.active_path(thread=thread)] == ["q", "a2"]
    assert [m.content for m in selectors.active_path(thread=thread, newest=1)] == ["a2"]
    assert first.parent_id == question.id and question.parent_id is None


def test_existing_threads_migrate_to_a_single_path_with_no_message_lost(alice):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("chat.migrations.0012_branches_shares")
    thread = make_thread(alice, "", "one", "two", "three", "four")
    empty = make_thread(alice)
    Message.objects.filter(thread=thread).update(parent=None)
    thread.active_leaf = None
    thread.save(update_fields=["active_leaf"])
    migration.one_path_each(apps, None)
    thread.refresh_from_db()
    assert [m.content for m in selectors.active_path(thread=thread)] == [
        "one",
        "two",
        "three",
        "four",
    ]
    empty.refresh_from_db()
    assert empty.active_leaf_id is None
