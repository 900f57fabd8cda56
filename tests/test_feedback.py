"""Feedback on replies: `PUT /api/messages/<id>/feedback/`, the message object's `feedback`,
the `feedback` frame other tabs get, and the admin's list and CSV export. (ChatKit's
`items.feedback` writing the same row, and feedback across processes, on daphne:
tests/test_chatkit.py and tests/test_transports.py.)"""

import csv
import io
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from chat.admin import FEEDBACK_CSV_COLUMNS
from chat.models import Feedback, Message, Thread
from tests.helpers import connect, receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reply(alice):
    thread = Thread.objects.create(owner=alice, title="rated", model="stub-model")
    asked = Message.objects.create(thread=thread, role="user", content="question")
    thread.active_leaf = Message.objects.create(
        thread=thread,
        parent=asked,
        role="assistant",
        content="=SUM(A1) an answer",
        status="complete",
        model="stub-model",
        token_count=12,
        first_token_ms=40,
        elapsed_ms=900,
    )
    thread.save(update_fields=["active_leaf"])
    return thread.active_leaf


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def put(client: Client, message_id, body) -> object:
    return client.put(
        f"/api/messages/{message_id}/feedback/", body, content_type="application/json"
    )


def listed(client: Client, thread_id) -> list[dict]:
    return client.get(f"/api/threads/{thread_id}/messages/").json()["results"]


def test_a_rating_with_tags_and_a_comment_is_saved_replaced_and_removed(alice, reply):
    client = client_of(alice)
    assert listed(client, reply.thread_id)[-1]["feedback"] is None
    given = put(client, reply.id, {"rating": "down", "tags": ["Too long"], "comment": " meh "})
    assert given.status_code == 200
    assert given.json() | {"updated_at": None} == {
        "rating": "down",
        "tags": ["Too long"],
        "comment": "meh",
        "updated_at": None,
    }
    shown = listed(client, reply.thread_id)[-1]["feedback"]
    assert (shown["rating"], shown["tags"], shown["comment"]) == ("down", ["Too long"], "meh")

    assert put(client, reply.id, {"rating": "up"}).status_code == 200
    saved = Feedback.objects.get()
    assert (saved.rating, saved.tags, saved.comment, saved.user) == ("up", [], "", alice)

    assert put(client, reply.id, {"rating": None}).status_code == 200
    assert not Feedback.objects.exists()
    assert listed(client, reply.thread_id)[-1]["feedback"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"rating": "sideways"},
        {"tags": ["x"]},
        {"rating": "up", "tags": "not a list"},
        {"rating": "up", "tags": ["x" * 41]},
        {"rating": "up", "tags": [f"t{i}" for i in range(11)]},
        {"rating": "up", "tags": [""]},
        {"rating": "up", "comment": "c" * 2001},
        {"rating": "up", "comment": "nul\x00"},
        ["up"],
    ],
)
def test_bad_feedback_is_a_400_and_the_feedback_before_is_kept(alice, reply, body):
    client = client_of(alice)
    put(client, reply.id, {"rating": "up", "tags": ["Helpful"], "comment": "kept"})
    answer = put(client, reply.id, body)
    assert answer.status_code == 400 and answer.json()["code"] == "bad_request"
    kept = Feedback.objects.get()
    assert (kept.rating, kept.tags, kept.comment) == ("up", ["Helpful"], "kept")


def test_only_a_finished_reply_of_ones_own_can_be_rated(alice, bob, reply):
    question = reply.thread.messages.get(role="user")
    assert put(client_of(alice), question.id, {"rating": "up"}).status_code == 400
    running = Message.objects.create(thread=reply.thread, role="assistant", status="streaming")
    assert put(client_of(alice), running.id, {"rating": "up"}).status_code == 400
    assert put(client_of(bob), reply.id, {"rating": "down"}).status_code == 404
    assert put(client_of(alice), uuid.uuid4(), {"rating": "up"}).status_code == 404
    assert not Feedback.objects.exists()


@pytest.mark.asyncio
async def test_another_tab_of_the_thread_hears_the_feedback(alice, reply):
    from channels.db import database_sync_to_async

    ws = await connect(reply.thread_id, alice)
    assert (await receive(ws))["type"] == "ready"
    body = {"rating": "down", "tags": ["Inaccurate"], "comment": "wrong year"}
    rate = database_sync_to_async(lambda body: put(client_of(alice), reply.id, body))
    await rate(body)
    heard = await receive(ws)
    assert heard["type"] == "feedback" and heard["message_id"] == str(reply.id)
    assert heard["feedback"]["tags"] == ["Inaccurate"]
    await rate({"rating": None})
    assert (await receive(ws))["feedback"] is None
    await ws.disconnect()


def test_the_admin_lists_feedback_by_rating_and_model_and_exports_csv(
    alice, reply, django_user_model
):
    put(client_of(alice), reply.id, {"rating": "down", "tags": ["A", "B"], "comment": "c"})
    other = Message.objects.create(
        thread=reply.thread, role="assistant", status="complete", model="other", content="fine"
    )
    put(client_of(alice), other.id, {"rating": "up"})
    operator = Client()
    operator.force_login(django_user_model.objects.create_superuser("op", password="op-pw"))
    changelist = reverse("admin:chat_feedback_changelist")
    page = operator.get(changelist, {"rating__exact": "down"})
    assert page.status_code == 200 and "=SUM(A1) an answer" in page.text and "fine" not in page.text
    by_model = operator.get(changelist, {"model": "other"})
    assert "fine" in by_model.text and "=SUM(A1)" not in by_model.text

    ids = [str(pk) for pk in Feedback.objects.values_list("pk", flat=True)]
    exported = operator.post(changelist, {"action": "export_csv", "_selected_action": ids})
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert tuple(rows[0]) == FEEDBACK_CSV_COLUMNS
    by_rating = {row[2]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    down = by_rating["down"]
    assert (down["user"], down["tags"], down["model"], down["tokens"]) == (
        "alice",
        "A; B",
        "stub-model",
        "12",
    )
    assert down["thread_id"] == str(reply.thread_id) and down["message_id"] == str(reply.id)
    assert down["reply"] == "'=SUM(A1) an answer", "a spreadsheet does not run it as a formula"
    assert by_rating["up"]["model"] == "other"
