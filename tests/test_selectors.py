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


def test_the_history_keeps_the_newest_messages_that_fit_and_skips_the_reply_being_written(
    alice,
):
    thread = make_thread(alice, "", "first " * 10, "second", "third", "fourth")
    writing = Message.objects.create(thread=thread, role="assistant", status="streaming")
    history = selectors.thread_history(thread_id=thread.id, exclude_id=writing.id, max_chars=20)
    assert history.left_out == 1, "the first message did not fit"
    assert history.messages == [
        {"role": "assistant", "content": "second"},
        {"role": "user", "content": "third"},
        {"role": "assistant", "content": "fourth"},
    ]
    alone = selectors.thread_history(thread_id=thread.id, exclude_id=None, max_chars=3)
    assert alone.messages == [{"role": "assistant", "content": "rth"}], "the newest, cut to fit"
    assert alone.left_out == 3


def test_a_repeated_send_finds_the_reply_that_answered_it(alice):
    thread = make_thread(alice)
    asked = Message.objects.create(thread=thread, role="user", content="q", client_id=uuid.uuid4())
    reply = Message.objects.create(thread=thread, role="assistant", status="complete")
    assert selectors.reply_to_send(thread_id=thread.id, client_id=asked.client_id) == reply
    assert selectors.reply_to_send(thread_id=thread.id, client_id=uuid.uuid4()) is None
