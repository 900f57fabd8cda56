"""The HTTP API: threads, exports, client secrets, and who may see what."""

import json
import time
import uuid

import pytest
from django.test import Client

from chat.models import Message, Thread
from tests.helpers import client_secret, make_thread

# Transactional: the async streaming views reach the database from their own threads.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def csrf_client(alice):
    """A logged-in browser session whose writes must carry the CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client


def test_threads_are_listed_newest_first_and_only_the_owners(alice_client, alice, bob):
    older = make_thread(alice, "older")
    newer = make_thread(alice, "newer")
    make_thread(bob, "bob's")
    listed = alice_client.get("/api/threads/").json()["results"]
    assert [t["id"] for t in listed] == [str(newer.id), str(older.id)]


def test_threads_are_found_by_title_or_by_the_text_of_their_messages(alice_client, alice, bob):
    by_title = make_thread(alice, "Lisbon trip")
    by_text = make_thread(alice, "misc", "what about lisbon in May?", "Sure")
    make_thread(alice, "Other", "nothing here")
    make_thread(bob, "Lisbon too")
    found = alice_client.get("/api/threads/", {"search": "lisbon"}).json()["results"]
    assert {t["id"] for t in found} == {str(by_title.id), str(by_text.id)}


def test_a_thread_is_created_renamed_and_deleted(alice_client):
    created = alice_client.post(
        "/api/threads/", {"title": "First"}, content_type="application/json"
    )
    assert created.status_code == 201
    thread_id = created.json()["id"]
    renamed = alice_client.patch(
        f"/api/threads/{thread_id}/", {"title": "Renamed"}, content_type="application/json"
    )
    assert renamed.json()["title"] == "Renamed"
    assert alice_client.get(f"/api/threads/{thread_id}/").json()["title"] == "Renamed"
    assert alice_client.delete(f"/api/threads/{thread_id}/").status_code == 204
    assert alice_client.get(f"/api/threads/{thread_id}/").status_code == 404


def test_a_thread_is_pinned_and_unpinned_without_moving_in_time_and_only_by_its_owner(
    alice_client, alice, bob
):
    thread, bobs = make_thread(alice, "keep me"), make_thread(bob, "bob's")
    assert alice_client.get(f"/api/threads/{thread.id}/").json()["pinned"] is False
    before = Thread.objects.get(pk=thread.pk).updated_at

    def pin(thread_id, pinned):
        return alice_client.patch(
            f"/api/threads/{thread_id}/", {"pinned": pinned}, content_type="application/json"
        )

    pinned = pin(thread.id, True)
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    assert alice_client.get("/api/threads/").json()["results"][0]["pinned"] is True
    assert Thread.objects.get(pk=thread.pk).updated_at == before, "no activity: same place"
    assert pin(thread.id, False).json()["pinned"] is False
    assert pin(thread.id, "sideways").status_code == 400
    assert pin(bobs.id, True).status_code == 404
    assert Thread.objects.get(pk=bobs.pk).pinned_at is None


def test_messages_come_newest_page_first_with_older_pages_behind_previous(alice_client, alice):
    thread = make_thread(alice, "long", *[f"m{i}" for i in range(120)])
    page = alice_client.get(f"/api/threads/{thread.id}/messages/").json()
    seen = [m["content"] for m in page["results"]]
    assert seen == [f"m{i}" for i in range(70, 120)] and page["next"] is None
    while page["previous"]:
        page = alice_client.get(page["previous"]).json()
        seen = [m["content"] for m in page["results"]] + seen
    assert seen == [f"m{i}" for i in range(120)]


def test_a_thread_exports_as_markdown_and_as_json(alice_client, alice):
    thread = make_thread(alice, "Recipe", "How do I make **pancakes**?", "Mix flour, eggs, milk.")
    md = alice_client.get(f"/api/threads/{thread.id}/export/", {"format": "markdown"})
    assert md["Content-Type"].startswith("text/markdown")
    assert 'filename="recipe.md"' in md["Content-Disposition"]
    text = md.content.decode()
    assert text.startswith("# Recipe") and "How do I make **pancakes**?" in text
    assert text.index("## You") < text.index("## Assistant") < text.index("Mix flour")
    data = json.loads(
        alice_client.get(f"/api/threads/{thread.id}/export/", {"format": "json"}).content
    )
    assert data["title"] == "Recipe"
    assert [m["content"] for m in data["messages"]] == [
        "How do I make **pancakes**?",
        "Mix flour, eggs, milk.",
    ]


ENDPOINTS = [
    ("get", "/api/threads/{id}/", None),
    ("patch", "/api/threads/{id}/", {"title": "x"}),
    ("delete", "/api/threads/{id}/", None),
    ("get", "/api/threads/{id}/messages/", None),
    ("get", "/api/threads/{id}/export/", None),
    ("get", "/api/threads/{id}/events/", None),
    ("post", "/api/stream/message", {"message": "hi", "thread_id": "{id}"}),
    ("post", "/api/stream/chatkit", {"message": "hi", "thread_id": "{id}"}),
]


def _call(client, method, path, body, thread_id, **extra):
    path = path.format(id=thread_id)
    if body is not None:
        body = json.loads(json.dumps(body).replace("{id}", str(thread_id)))
        return getattr(client, method)(path, body, content_type="application/json", **extra)
    return getattr(client, method)(path, **extra)


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
def test_every_endpoint_answers_another_users_thread_with_404(bob, alice, method, path, body):
    thread = make_thread(alice, "private", "secret text")
    client = Client()
    client.force_login(bob)
    assert _call(client, method, path, body, thread.id).status_code == 404
    assert Thread.objects.get(pk=thread.pk).title == "private"
    assert Message.objects.filter(thread=thread).count() == 1


@pytest.mark.parametrize(
    "method, path, body",
    ENDPOINTS
    + [
        ("get", "/api/threads/", None),
        ("post", "/api/threads/", {}),
        ("post", "/api/chatkit/session", None),
        ("post", "/api/stream/message", {"message": "hi"}),
    ],
)
def test_every_endpoint_refuses_an_anonymous_client(alice, method, path, body):
    thread = make_thread(alice, "private")
    answer = _call(Client(), method, path, body, thread.id)
    assert answer.status_code in (401, 403)
    assert Thread.objects.count() == 1 and Message.objects.count() == 0


@pytest.mark.parametrize(
    "method, path, body",
    [e for e in ENDPOINTS if e[0] != "get"]
    + [
        ("post", "/api/threads/", {}),
        ("post", "/api/chatkit/session", None),
        ("post", "/api/stream/message", {"message": "hi"}),
    ],
)
def test_every_session_write_without_csrf_is_refused(csrf_client, alice, method, path, body):
    thread = make_thread(alice, "mine")
    answer = _call(csrf_client, method, path, body, thread.id)
    assert answer.status_code == 403
    assert answer["Content-Type"].startswith("application/json"), "a JSON API answers JSON"
    assert "CSRF" in answer.json()["detail"]
    assert Thread.objects.count() == 1 and Thread.objects.get().title == "mine"
    assert Message.objects.count() == 0


def test_a_session_write_with_the_csrf_token_goes_through(csrf_client):
    csrf_client.get("/")  # the page sets the CSRF cookie
    token = csrf_client.cookies["csrftoken"].value
    answer = csrf_client.post(
        "/api/threads/", {"title": "ok"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert answer.status_code == 201


def test_a_client_secret_works_as_bearer_and_needs_no_csrf(alice_client, alice):
    thread = make_thread(alice, "mine")
    session = alice_client.post("/api/chatkit/session").json()
    assert session["client_secret"].startswith("cs_")
    assert session["expires_at"] > time.time()
    bearer = Client(
        enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {session['client_secret']}"
    )
    assert [t["id"] for t in bearer.get("/api/threads/").json()["results"]] == [str(thread.id)]
    created = bearer.post("/api/threads/", {"title": "by bearer"}, content_type="application/json")
    assert created.status_code == 201
    assert bearer.post("/api/chatkit/session").status_code in (401, 403), "no secret from a secret"


def test_expired_tampered_or_foreign_secrets_are_refused(alice_client, alice, bob, settings):
    alices_thread = make_thread(alice, "alice's")
    good = alice_client.post("/api/chatkit/session").json()["client_secret"]
    tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    settings.CLIENT_SECRET_TTL = -1
    expired = client_secret(alice)
    settings.CLIENT_SECRET_TTL = 600
    for secret in (tampered, expired, "cs_nonsense", "not-even-a-secret"):
        answer = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/threads/")
        assert answer.status_code == 401, secret
        assert answer["WWW-Authenticate"].startswith("Bearer")
    bobs = client_secret(bob)
    as_bob = Client(HTTP_AUTHORIZATION=f"Bearer {bobs}")
    assert as_bob.get(f"/api/threads/{alices_thread.id}/").status_code == 404
    assert as_bob.get(f"/api/threads/{alices_thread.id}/events/").status_code == 404


def test_a_password_change_revokes_the_users_secrets(alice):
    secret = client_secret(alice)
    alice.set_password("something-new-and-long")
    alice.save()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/threads/").status_code == 401


def test_hosted_chatkit_sessions_come_from_openai_with_the_beta_header(
    alice_client, stub, settings
):
    settings.CHATKIT_WORKFLOW_ID = "wf_test_123"
    answer = alice_client.post("/api/chatkit/session")
    assert answer.status_code == 200
    body = answer.json()
    assert body["client_secret"].startswith("ek_") and body["expires_at"] > time.time()
    sent = [r for r in stub.requests if r["path"] == "/v1/chatkit/sessions"][-1]
    assert sent["headers"]["openai-beta"] == "chatkit_beta=v1"
    assert sent["body"]["workflow"] == {"id": "wf_test_123"}
    assert sent["body"]["user"] == str(alice_client.session["_auth_user_id"])


def test_a_refused_hosted_chatkit_session_is_a_clear_502(alice_client, stub, settings):
    settings.CHATKIT_WORKFLOW_ID = "wf_test_123"
    stub.chatkit_status = 401
    answer = alice_client.post("/api/chatkit/session")
    assert answer.status_code == 502
    assert "OpenAI refused the ChatKit session (HTTP 401)" in answer.json()["detail"]


def test_health_reports_the_database(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json()["database"] == "ok"


def test_the_schema_and_its_docs_page_are_served(alice_client):
    schema = alice_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert {"/api/stream/message", "/api/threads/{id}/events/", "/api/chatkit/session"} <= set(
        paths
    )
    docs = alice_client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_unknown_thread_ids_are_404_not_500(alice_client):
    assert alice_client.get(f"/api/threads/{uuid.uuid4()}/").status_code == 404
    assert alice_client.get("/api/threads/not-a-uuid/").status_code == 404


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://testserver:9999", "https://testserver", "null"]
)
def test_a_foreign_origin_cannot_stand_in_for_the_csrf_token(csrf_client, alice, origin):
    thread = make_thread(alice, "mine")
    answer = csrf_client.post(
        "/api/stream/message",
        {"message": "hi", "thread_id": str(thread.id)},
        content_type="application/json",
        HTTP_ORIGIN=origin,
    )
    assert answer.status_code == 403
    assert Message.objects.count() == 0


def test_the_secret_key_and_the_database_are_created_private(tmp_path):
    """A fresh var/ on a laptop: the key and the SQLite file are 0600 from the start."""
    import os
    import stat
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env.update(CHAT_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="chatproject.settings")
    code = "import django; django.setup()"
    for _ in range(2):  # the second start reads the key the first wrote
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    var = tmp_path / "var"
    assert stat.S_IMODE(os.stat(var / "secret_key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(var / "db.sqlite3").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(var).st_mode) == 0o700
    assert [p.name for p in var.iterdir() if p.name.startswith(".secret_key")] == []


def test_the_page_login_and_admin_carry_a_strict_content_security_policy(alice_client):
    for url in ("/", "/accounts/login/", "/admin/login/"):
        policy = Client().get(url).headers.get("Content-Security-Policy", "")
        if url == "/":
            policy = alice_client.get(url).headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["default-src"] == "'self'", url
        assert directives["script-src"] == "'self'", url
        assert directives["frame-ancestors"] == "'none'", url
        assert "unsafe" not in policy, url


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_password_guessing_locks_the_username_out_even_for_the_right_password(
    alice, settings, login_url
):
    """After LOGIN_FAILURE_LIMIT wrong passwords the right one is refused too (from there);
    another user, and the same user from another address, still get in."""
    from django.contrib.auth.models import User

    alice.is_staff = True  # the admin's login takes staff only
    alice.set_password("right-password")
    alice.save()
    User.objects.create_user("bob", password="bobs-password", is_staff=True)
    client = Client(REMOTE_ADDR="10.0.0.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        guess = client.post(login_url, {"username": "alice", "password": "wrong"})
        assert guess.status_code in (200, 429)
    locked = client.post(login_url, {"username": "alice", "password": "right-password"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    other_user = Client(REMOTE_ADDR="10.0.0.7")
    assert (
        other_user.post(login_url, {"username": "bob", "password": "bobs-password"}).status_code
        == 302
    )
    elsewhere = Client(REMOTE_ADDR="10.0.0.8")
    answer = elsewhere.post(login_url, {"username": "alice", "password": "right-password"})
    assert answer.status_code == 302


@pytest.mark.parametrize("title", ["nul\x00inside", "\x00"])
def test_a_thread_title_with_a_nul_character_is_refused(alice_client, alice, title):
    created = alice_client.post("/api/threads/", {"title": title}, content_type="application/json")
    assert created.status_code == 400 and "title" in created.json()
    thread = make_thread(alice, "kept")
    renamed = alice_client.patch(
        f"/api/threads/{thread.id}/", {"title": title}, content_type="application/json"
    )
    assert renamed.status_code == 400
    assert list(Thread.objects.values_list("title", flat=True)) == ["kept"]


# (POST /api/chatkit answers it as one ChatKit `error` event instead: tests/test_chatkit.py.)
@pytest.mark.parametrize("path", ["/api/threads/", "/api/stream/message"])
def test_a_body_past_the_upload_limit_is_a_json_413(alice_client, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"title": "x" * 2000, "message": "x" * 2000})
    answer = alice_client.post(path, body, content_type="application/json")
    assert answer.status_code == 413
    assert answer["Content-Type"].startswith("application/json")
    assert answer.json()["code"] == "too_large"
    assert Thread.objects.count() == 0
