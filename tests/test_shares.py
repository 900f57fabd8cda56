"""Shares: a thread's read-only snapshot for anyone with its link (`/s/<token>/`,
`GET /api/shares/<token>/`), made, listed and revoked by its owner alone; what a reader sees
(and never sees), later changes absent, revoke, expiry and deletion giving 404, the
snapshot's files, the thread's API and socket closed to a reader, CSRF, the admin. (The
dialog and the page in a browser: test_browser_shares.py.)"""

import datetime
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from jsonschema import Draft202012Validator

from chat import frame_schema, services
from chat.models import Attachment, Feedback, Message, Share, Thread
from tests.helpers import connect, make_thread

pytestmark = pytest.mark.django_db

SECRET_ARGUMENTS = '{"query": "the-owner-s-other-thread"}'
SECRET_OUTPUT = "what another thread of the owner's said"
FEEDBACK_COMMENT = "a private remark on this reply"


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    """Attachments in a folder of this test's own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files")},
        },
    }


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        username="alice.owner", email="alice@example.org", password="pw-alice"
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def thread(alice) -> Thread:
    """Alice's thread: a question with a file, and a reply with a tool step, feedback, model
    and metrics, all things a reader must not see beyond the text, the step's name and the
    file."""
    thread = make_thread(alice, "Planning the trip", "Where should we go in May?")
    question = thread.active_leaf
    question.client_id = uuid.uuid4()
    question.save(update_fields=["client_id"])
    notes = services.attachment_create(owner=alice, name="notes.txt", content=b"Lisbon or Porto\n")
    Attachment.objects.filter(pk=notes.pk).update(message=question)
    reply = Message.objects.create(
        thread=thread,
        parent=question,
        role="assistant",
        content="Try **Lisbon**.\n\n```python\nprint('tram 28')\n```",
        model="stub-model",
        client_id=uuid.uuid4(),
        token_count=12,
        first_token_ms=40,
        elapsed_ms=900,
        steps=[
            {
                "call_id": "call-1",
                "name": "search_threads",
                "arguments": SECRET_ARGUMENTS,
                "status": "done",
                "output": SECRET_OUTPUT,
                "offset": 0,
                "elapsed_ms": 5,
            }
        ],
    )
    Feedback.objects.create(message=reply, user=alice, rating="up", comment=FEEDBACK_COMMENT)
    thread.active_leaf = reply
    thread.save(update_fields=["active_leaf"])
    return thread


def share(client: Client, thread: Thread, **body):
    return client.post(f"/api/threads/{thread.id}/shares/", body, content_type="application/json")


def shared(thread: Thread, alice, **body) -> dict:
    made = share(logged_in(alice), thread, **body)
    assert made.status_code == 201, made.content
    return made.json()


def identifying(thread: Thread, alice) -> list[str]:
    """What must never reach a reader: whose thread it is, its ids, feedback, the model and
    its metrics, a step's arguments and output."""
    messages = list(thread.messages.all())
    return [
        alice.username,
        alice.email,
        str(thread.id),
        *(str(m.id) for m in messages),
        *(str(m.client_id) for m in messages if m.client_id),
        FEEDBACK_COMMENT,
        "stub-model",
        "the-owner-s-other-thread",
        SECRET_OUTPUT,
        "call-1",
        "first_token",
        "feedback",
    ]


def test_anyone_with_the_link_reads_the_snapshot_and_nothing_that_identifies_its_owner(
    thread, alice
):
    made = shared(thread, alice)
    assert set(made) == {"token", "url", "up_to", "created_at", "expires_at"}
    assert made["url"] == f"http://testserver/s/{made['token']}/"
    assert made["up_to"] == str(thread.active_leaf_id) and made["expires_at"] is None
    assert len(made["token"]) >= 43, "at least 256 random bits, url-safe"

    read = Client().get(f"/api/shares/{made['token']}/")
    assert read.status_code == 200
    body = read.json()
    Draft202012Validator(frame_schema.schema("SharedThread")).validate(body)
    assert body["title"] == "Planning the trip"
    question, reply = body["messages"]
    assert (question["role"], question["content"]) == ("user", "Where should we go in May?")
    attachment_id = Attachment.objects.get(name="notes.txt").id
    assert question["attachments"] == [
        {
            "name": "notes.txt",
            "mime_type": "text/plain",
            "size": 16,
            "kind": "text",
            "url": f"/api/shares/{made['token']}/attachments/{attachment_id}",
        }
    ]
    assert reply["role"] == "assistant" and reply["content"].startswith("Try **Lisbon**.")
    assert reply["steps"] == [{"name": "search_threads", "status": "done"}]
    assert set(reply) == {"role", "content", "created_at", "steps"}
    for secret in identifying(thread, alice):
        assert secret not in read.content.decode(), secret
    assert read["Cache-Control"] == "no-store"


def test_the_shared_page_is_read_only_noindex_and_names_nobody(thread, alice):
    token = shared(thread, alice)["token"]
    page = Client().get(f"/s/{token}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert page["X-Robots-Tag"] == "noindex"
    assert '<meta name="robots" content="noindex">' in html
    assert "Where should we go in May?" in html and "Planning the trip" in html
    assert "chat/sharepage.js" in html and "shared snapshot" in html
    # No composer, no socket, no thread list, no link into the owner's thread.
    for absent in ("textarea", "/ws/", "data-thread-list", "chat/main.js", "/api/threads/"):
        assert absent not in html, absent
    for secret in identifying(thread, alice):
        assert secret not in html, secret
    # The owner's own session sees the same page: still nobody named.
    assert alice.username not in logged_in(alice).get(f"/s/{token}/").content.decode()


def test_messages_sent_edits_and_branches_after_sharing_are_not_in_the_snapshot(thread, alice):
    token = shared(thread, alice)["token"]
    reply = thread.active_leaf
    later = Message.objects.create(thread=thread, parent=reply, role="user", content="And June?")
    Message.objects.filter(pk=reply.pk).update(content="Try Porto instead.")
    sibling = Message.objects.create(
        thread=thread, parent=reply.parent, role="assistant", content="A regenerated answer"
    )
    Thread.objects.filter(pk=thread.pk).update(active_leaf=sibling)
    Message.objects.filter(pk=later.pk).update(content="And June, really?")

    body = Client().get(f"/api/shares/{token}/").json()
    assert [m["content"][:15] for m in body["messages"]] == [
        "Where should we",
        "Try **Lisbon**.",
    ]
    page = Client().get(f"/s/{token}/").content.decode()
    for later_text in ("And June", "Porto instead", "regenerated"):
        assert later_text not in page


def test_a_share_stops_before_a_reply_still_streaming_and_up_to_picks_an_earlier_message(
    thread, alice
):
    question = thread.active_leaf.parent
    running = Message.objects.create(
        thread=thread, parent=thread.active_leaf, role="assistant", status="streaming"
    )
    Thread.objects.filter(pk=thread.pk).update(active_leaf=running)
    thread.refresh_from_db()
    made = shared(thread, alice)
    assert made["up_to"] == str(running.parent_id), "the last message that is not streaming"
    assert len(Client().get(f"/api/shares/{made['token']}/").json()["messages"]) == 2

    first = shared(thread, alice, up_to=str(question.id), expires_in=3600)
    body = Client().get(f"/api/shares/{first['token']}/").json()
    assert [m["role"] for m in body["messages"]] == ["user"]
    expires = datetime.datetime.fromisoformat(first["expires_at"])
    assert timezone.now() + datetime.timedelta(minutes=59) < expires


@pytest.mark.parametrize(
    "body, says",
    [
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": -5}, "expires_in"),
        ({"expires_in": 1.5}, "expires_in"),
        ({"expires_in": "3600"}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
        ({"expires_in": 10**12}, "expires_in"),
        ({"up_to": "not-a-uuid"}, "message id"),
        ({"up_to": str(uuid.uuid4())}, "not a message of this thread"),
        ({"up_to": "streaming"}, "still being written"),
        ({"up_to": "other branch"}, "not on the path"),
        ({"up_to": "bob's"}, "not a message of this thread"),
    ],
)
def test_bad_input_is_a_400_and_nothing_is_shared(thread, alice, make_user, body, says):
    if body.get("up_to") == "streaming":
        running = Message.objects.create(
            thread=thread, parent=thread.active_leaf, role="assistant", status="streaming"
        )
        Thread.objects.filter(pk=thread.pk).update(active_leaf=running)
        body = {"up_to": str(running.id)}
    elif body.get("up_to") == "other branch":
        other = Message.objects.create(
            thread=thread, parent=thread.active_leaf.parent, role="assistant", content="B"
        )
        body = {"up_to": str(other.id)}
    elif body.get("up_to") == "bob's":
        bobs = make_thread(make_user("bob"), "", "bob's question")
        body = {"up_to": str(bobs.active_leaf_id)}
    refused = share(logged_in(alice), thread, **body)
    assert refused.status_code == 400, refused.content
    assert refused.json()["code"] == "bad_request" and says in refused.json()["message"]
    assert Share.objects.count() == 0


def test_a_reply_that_failed_before_any_text_is_left_out(alice):
    failed = make_thread(alice, "t", "a question", "")
    Message.objects.filter(pk=failed.active_leaf_id).update(status="error", error_code="timeout")
    failed.refresh_from_db()
    token = shared(failed, alice)["token"]
    body = Client().get(f"/api/shares/{token}/").json()
    assert [m["content"] for m in body["messages"]] == ["a question"]


def test_an_empty_thread_has_nothing_to_share(alice):
    empty = make_thread(alice, "nothing yet")
    refused = share(logged_in(alice), empty)
    assert refused.status_code == 400 and "no finished message" in refused.json()["message"]


def test_a_thread_has_a_bounded_number_of_live_shares(thread, alice, monkeypatch):
    monkeypatch.setattr(services, "SHARES_PER_THREAD", 2)
    shared(thread, alice)
    shared(thread, alice)
    refused = share(logged_in(alice), thread)
    assert refused.status_code == 400 and "2 live shares" in refused.json()["message"]
    # An expired one no longer counts.
    Share.objects.filter(pk=Share.objects.first().pk).update(expires_at=timezone.now())
    shared(thread, alice)


def test_only_the_owner_lists_creates_and_revokes(thread, alice, make_user):
    token = shared(thread, alice)["token"]
    bob = logged_in(make_user("bob"))
    assert bob.get(f"/api/threads/{thread.id}/shares/").status_code == 404
    assert share(bob, thread).status_code == 404
    assert bob.delete(f"/api/shares/{token}/").status_code == 404
    anonymous = Client()
    assert anonymous.get(f"/api/threads/{thread.id}/shares/").status_code in (401, 403)
    assert share(anonymous, thread).status_code in (401, 403)
    assert anonymous.delete(f"/api/shares/{token}/").status_code in (401, 403)
    assert Share.objects.count() == 1
    assert Client().get(f"/api/shares/{token}/").status_code == 200

    listed = logged_in(alice).get(f"/api/threads/{thread.id}/shares/").json()
    assert [s["token"] for s in listed] == [token]


def test_revoked_and_expired_shares_are_404_for_the_api_the_page_and_the_files(thread, alice):
    owner = logged_in(alice)
    revoked, expired = shared(thread, alice)["token"], shared(thread, alice)["token"]
    file_id = Attachment.objects.get(name="notes.txt").id
    for token in (revoked, expired):
        assert Client().get(f"/api/shares/{token}/attachments/{file_id}").status_code == 200

    assert owner.delete(f"/api/shares/{revoked}/").status_code == 204
    Share.objects.filter(token=expired).update(expires_at=timezone.now())
    for token in (revoked, expired, "x" * 43, "y" * 500):
        assert Client().get(f"/api/shares/{token}/").status_code == 404
        page = Client().get(f"/s/{token}/")
        assert page.status_code == 404 and 'data-error-page="404"' in page.content.decode()
        assert "revoked, has expired, or never existed" in page.content.decode()
        assert page["X-Robots-Tag"] == "noindex"
        assert Client().get(f"/api/shares/{token}/attachments/{file_id}").status_code == 404
    assert owner.get(f"/api/threads/{thread.id}/shares/").json() == []
    assert services.shares_sweep() == 1 and not Share.objects.filter(token=expired).exists()


def test_a_share_dies_with_its_thread_and_with_its_owners_account(thread, alice):
    first, second = shared(thread, alice)["token"], shared(thread, alice)["token"]
    other = make_thread(alice, "another", "hello", "hi")
    third = shared(other, alice)["token"]
    assert logged_in(alice).delete(f"/api/threads/{thread.id}/").status_code == 204
    for token in (first, second):
        assert Client().get(f"/api/shares/{token}/").status_code == 404
        assert Client().get(f"/s/{token}/").status_code == 404
    assert Client().get(f"/api/shares/{third}/").status_code == 200
    services.account_delete(user=alice)
    assert Client().get(f"/api/shares/{third}/").status_code == 404
    assert Client().get(f"/s/{third}/").status_code == 404
    assert Share.objects.count() == 0


def test_only_the_snapshots_files_are_served_with_the_owners_headers(thread, alice):
    question = thread.active_leaf.parent
    photo = services.attachment_create(owner=alice, name="map.png", content=png())
    Attachment.objects.filter(pk=photo.pk).update(message=question)
    token = shared(thread, alice)["token"]
    # Files the snapshot does not hold: sent after it, in another thread, never sent.
    later = services.attachment_create(owner=alice, name="later.txt", content=b"later\n")
    Attachment.objects.filter(pk=later.pk).update(message=thread.active_leaf)
    elsewhere = make_thread(alice, "other", "other question")
    private = services.attachment_create(owner=alice, name="private.txt", content=b"mine\n")
    Attachment.objects.filter(pk=private.pk).update(message=elsewhere.active_leaf)
    unsent = services.attachment_create(owner=alice, name="unsent.txt", content=b"draft\n")

    notes = Attachment.objects.get(name="notes.txt")
    text = Client().get(f"/api/shares/{token}/attachments/{notes.id}")
    assert text.status_code == 200 and b"".join(text.streaming_content) == b"Lisbon or Porto\n"
    assert text["X-Content-Type-Options"] == "nosniff"
    assert text["Content-Disposition"].startswith("attachment")
    image = Client().get(f"/api/shares/{token}/attachments/{photo.id}")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert not image["Content-Disposition"].startswith("attachment")
    assert image["X-Content-Type-Options"] == "nosniff"
    for other in (later, private, unsent):
        assert Client().get(f"/api/shares/{token}/attachments/{other.id}").status_code == 404
    # Another share's token does not open this one's files either.
    other_token = shared(elsewhere, alice)["token"]
    assert Client().get(f"/api/shares/{other_token}/attachments/{notes.id}").status_code == 404


def png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_a_reader_gets_no_way_into_the_threads_api(thread, alice, make_user):
    token = shared(thread, alice)["token"]
    reader = Client()
    assert reader.get(f"/s/{token}/").status_code == 200
    for path in ("", "messages/", "export/", "events/", "shares/"):
        assert reader.get(f"/api/threads/{thread.id}/{path}").status_code in (401, 403), path
    logged_in_reader = logged_in(make_user("carol"))
    assert logged_in_reader.get(f"/s/{token}/").status_code == 200
    for path in ("", "messages/", "export/", "shares/"):
        assert logged_in_reader.get(f"/api/threads/{thread.id}/{path}").status_code == 404, path


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_reader_cannot_open_the_threads_socket(alice, make_user):
    from channels.db import database_sync_to_async

    thread = await database_sync_to_async(make_thread)(alice, "t", "question", "answer")
    await database_sync_to_async(services.share_create)(thread=thread)
    carol = await database_sync_to_async(make_user)("carol")
    for user, code in ((None, 4401), (carol, 4404)):
        communicator = await connect(thread.id, user)
        assert (await communicator.receive_output(timeout=5))["code"] == code
        await communicator.disconnect()


def test_reads_need_no_csrf_and_the_owners_writes_do(thread, alice):
    token = shared(thread, alice)["token"]
    strict = Client(enforce_csrf_checks=True)
    assert strict.get(f"/api/shares/{token}/").status_code == 200
    # A bad credential does not turn a public read into a 401.
    assert strict.get(f"/api/shares/{token}/", HTTP_AUTHORIZATION="Bearer nope").status_code == 200
    strict.force_login(alice)
    assert strict.get(f"/api/shares/{token}/").status_code == 200
    assert share(strict, thread).status_code == 403
    assert strict.delete(f"/api/shares/{token}/").status_code == 403
    assert Share.objects.count() == 1


def test_the_admin_lists_filters_and_revokes_shares(thread, alice, django_user_model):
    live, expired = shared(thread, alice)["token"], shared(thread, alice)["token"]
    Share.objects.filter(token=expired).update(expires_at=timezone.now())
    operator = Client()
    operator.force_login(django_user_model.objects.create_superuser("op", password="op-pw"))
    changelist = reverse("admin:chat_share_changelist")
    page = operator.get(changelist).content.decode()
    assert f"/s/{live}/" in page and f"/s/{expired}/" in page and "Planning the trip" in page
    only_expired = operator.get(changelist, {"expired": "yes"}).content.decode()
    assert f"/s/{expired}/" in only_expired and f"/s/{live}/" not in only_expired
    only_live = operator.get(changelist, {"expired": "no"}).content.decode()
    assert f"/s/{live}/" in only_live and f"/s/{expired}/" not in only_live

    ids = [str(Share.objects.get(token=live).pk)]
    operator.post(changelist, {"action": "revoke", "_selected_action": ids})
    assert Client().get(f"/api/shares/{live}/").status_code == 404
