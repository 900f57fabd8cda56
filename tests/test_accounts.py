"""chat/accounts.py: the settings page (the user's instructions reaching the model, the theme,
Django's password change ending the other sessions), the export, and deleting an account
with everything of it. In-process; the same over real daphne: test_accounts_site.py."""

import io
import json
import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import AsyncClient, Client

from chat import services
from chat.models import (
    Attachment,
    ClientSecretGrant,
    Feedback,
    Invite,
    Message,
    ModelUsage,
    Preferences,
    Thread,
    TokenUsage,
)
from tests.helpers import connect, frames_until_end, new_thread, receive, send, start_command
from tests.test_sessions import closed_with, logged_in_client, session_socket

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()
FRENCH = "Answer in French. I am a Django developer."


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def system_prompt(stub) -> str:
    """The system message of the provider's last request."""
    sent = [r for r in stub.requests if r["path"].endswith("/chat/completions")][-1]
    return next(m["content"] for m in sent["body"]["messages"] if m["role"] == "system")


async def stream_post(user, **body) -> list[dict]:
    client = AsyncClient()
    await client.aforce_login(user)
    answer = await client.post("/api/stream/message", body, content_type="application/json")
    text = b"".join([chunk async for chunk in answer.streaming_content]).decode()
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


@pytest.mark.asyncio
async def test_the_users_instructions_reach_the_model_on_the_websocket_and_the_streaming_post(
    stub, memory_layer, alice, settings
):
    await sync_to_async(services.preferences_set)(user=alice, instructions=FRENCH)
    thread = await new_thread(alice, "titled")
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("bonjour"))
    assert (await frames_until_end(ws))[-1]["type"] == "complete"
    await ws.disconnect()
    prompt = system_prompt(stub)
    assert prompt.startswith(settings.AGENT_INSTRUCTIONS) and prompt.endswith(FRENCH)

    stub.reset()
    events = await stream_post(alice, message="encore", thread_id=str(thread.id))
    assert events[-1]["type"] == "complete"
    assert system_prompt(stub).endswith(FRENCH)


def prompt_of(stub, text: str) -> str:
    """The system message of the reply request whose user message is `text`."""
    for sent in stub.requests:
        messages = sent["body"].get("messages", []) if sent["path"].endswith("/completions") else []
        if any(m["role"] == "user" and m["content"] == text for m in messages):
            return next(m["content"] for m in messages if m["role"] == "system")
    raise AssertionError(f"no request asked {text!r}")


@pytest.mark.asyncio
async def test_the_users_instructions_reach_the_model_of_a_new_thread_and_of_a_model_named(
    stub, memory_layer, alice, settings
):
    await sync_to_async(services.preferences_set)(user=alice, instructions=FRENCH)
    events = await stream_post(alice, message="nouveau fil")  # a new thread
    assert events[-1]["type"] == "complete"
    assert prompt_of(stub, "nouveau fil").endswith(FRENCH)
    thread = await new_thread(alice, "titled")
    events = await stream_post(
        alice, message="ce modèle", thread_id=str(thread.id), model=settings.AGENT_MODEL
    )
    assert events[-1]["type"] == "complete"
    assert prompt_of(stub, "ce modèle").endswith(FRENCH)


@pytest.mark.asyncio
async def test_without_instructions_of_their_own_the_agent_has_only_the_operators(
    stub, memory_layer, alice, settings
):
    events = await stream_post(alice, message="hello")
    assert events[-1]["type"] == "complete"
    assert system_prompt(stub) == settings.AGENT_INSTRUCTIONS


def test_the_settings_page_saves_instructions_and_theme_and_the_page_carries_the_theme(alice):
    client = logged_in(alice)
    page = client.get("/settings/")
    assert page.status_code == 200 and 'data-theme-choice="system"' in page.text
    assert "data-theme=" not in page.text.replace("data-theme-choice", "")
    saved = client.post("/settings/", {"instructions": f"  {FRENCH}  ", "theme": "dark"})
    assert saved.status_code == 302 and saved["Location"] == "/settings/"
    prefs = Preferences.objects.get(user=alice)
    assert (prefs.instructions, prefs.theme) == (FRENCH, "dark")
    for url in ("/settings/", "/"):
        assert '<html lang="en" data-theme="dark"' in client.get(url).text
    shown = client.get("/settings/").text
    assert FRENCH in shown and "every new reply" in shown
    assert 'href="/settings/"' in client.get("/").text, "the sidebar foot links to it"


def test_instructions_over_the_limit_are_refused_with_a_clear_message_and_nothing_saved(
    alice, settings
):
    settings.USER_INSTRUCTIONS_CHARS = 20
    client = logged_in(alice)
    refused = client.post("/settings/", {"instructions": "x" * 21, "theme": "light"})
    assert refused.status_code == 400
    assert "At most 20 characters: these are 21" in refused.text
    assert not Preferences.objects.filter(user=alice, instructions__gt="").exists()
    with pytest.raises(Exception, match="limit is 20"):
        services.preferences_set(user=alice, instructions="y" * 21)


def test_settings_need_a_login(client):
    for url in ("/settings/", "/settings/export/"):
        answer = client.get(url)
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


@pytest.mark.asyncio
async def test_a_password_change_keeps_this_session_and_closes_the_other_sessions_sockets(
    memory_layer, alice, settings
):
    settings.SESSION_CHECK_SECONDS = 3600  # the announcement alone must do it
    here, elsewhere = await logged_in_client(alice), await logged_in_client(alice)
    thread = await new_thread(alice, "t")
    other_socket = await session_socket(thread.id, elsewhere)
    changed = await sync_to_async(here.post)(
        "/accounts/password_change/",
        {
            "old_password": "pw-alice",
            "new_password1": "a fresh passphrase 42",
            "new_password2": "a fresh passphrase 42",
        },
    )
    assert changed.status_code == 302 and changed["Location"] == "/settings/"
    assert await closed_with(other_socket, timeout=2) == 4401
    assert (await sync_to_async(here.get)("/settings/")).status_code == 200, "this one stays"
    gone = await sync_to_async(elsewhere.get)("/settings/")
    assert gone.status_code == 302, "the other session is logged out"


def test_a_wrong_old_password_is_refused_on_the_settings_page(alice):
    answer = logged_in(alice).post(
        "/accounts/password_change/",
        {"old_password": "nope", "new_password1": "x-y-z-12345", "new_password2": "x-y-z-12345"},
    )
    assert answer.status_code == 400 and "Your old password was entered incorrectly" in answer.text


def a_user_with_everything(user) -> Thread:
    """A thread with a rated reply and a file, an unsent upload, usage rows, preferences and a
    client secret: every kind of row a user has."""
    thread = Thread.objects.create(owner=user, title="mine")
    Message.objects.create(thread=thread, role="user", content="question")
    reply = Message.objects.create(thread=thread, role="assistant", content="answer")
    Feedback.objects.create(message=reply, user=user, rating="up")
    store = storages["attachments"]
    for message in (reply, None):
        attachment = Attachment.objects.create(
            owner=user, message=message, name="a.txt", mime_type="text/plain", kind="text", size=3
        )
        attachment.path = store.save(f"{user.pk}/{attachment.id}", ContentFile(b"abc"))
        attachment.save()
    TokenUsage.objects.create(user=user, day="2026-01-01", used=5)
    ModelUsage.objects.create(user=user, day="2026-01-01", model="stub-model", output_tokens=5)
    services.preferences_set(user=user, instructions=FRENCH, theme="light")
    ClientSecretGrant.objects.create(user=user, session_key="k", expires_at="2099-01-01T00:00Z")
    return thread


def test_the_export_has_every_thread_with_its_messages_and_the_preferences(alice, bob):
    a_user_with_everything(alice)
    Thread.objects.create(owner=bob, title="not alice's")
    answer = logged_in(alice).get("/settings/export/")
    assert answer.status_code == 200 and "attachment;" in answer["Content-Disposition"]
    data = json.loads(answer.content)
    assert data["user"]["username"] == "alice"
    assert data["preferences"] == {"model": "", "instructions": FRENCH, "theme": "light"}
    [thread] = data["threads"]
    assert thread["title"] == "mine"
    assert [m["content"] for m in thread["messages"]] == ["question", "answer"]
    assert thread["messages"][1]["feedback"]["rating"] == "up"


def test_deleting_the_account_needs_the_username_typed_and_then_removes_every_row_and_file(
    alice, bob
):
    a_user_with_everything(alice)
    kept = a_user_with_everything(bob)
    paths = list(Attachment.objects.filter(owner=alice).values_list("path", flat=True))
    store = storages["attachments"]
    assert all(store.exists(p) for p in paths)
    client = logged_in(alice)

    refused = client.post("/settings/delete/", {"confirm": "alic"})
    assert refused.status_code == 400 and "Type alice exactly" in refused.text
    assert Thread.objects.filter(owner=alice).exists()

    deleted = client.post("/settings/delete/", {"confirm": "alice"})
    assert deleted.status_code == 302 and deleted["Location"] == "/accounts/login/?deleted=1"
    for model in (Thread, Attachment, ClientSecretGrant, Preferences):
        assert not model.objects.exclude(pk__in=_bobs(model, bob)).exists(), model
    assert Message.objects.exclude(thread=kept).count() == 0
    for model in (Feedback, TokenUsage, ModelUsage):
        assert set(model.objects.values_list("user__username", flat=True)) == {"bob"}
    assert not any(store.exists(p) for p in paths), "the files are gone from storage"
    assert all(store.exists(a.path) for a in Attachment.objects.filter(owner=bob))
    assert not type(alice).objects.filter(username="alice").exists()
    assert client.get("/").status_code == 302, "logged out"


def _bobs(model, bob) -> list:
    field = "owner" if model in (Thread, Attachment) else "user"
    return list(model.objects.filter(**{field: bob}).values_list("pk", flat=True))


# --- sign-up and password reset -------------------------------------------------------------

OFF_URLS = [
    "/accounts/signup/",
    "/accounts/signup/MQ/abc-123/",
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/MQ/abc-123/",
    "/accounts/reset/done/",
]


@pytest.fixture
def fresh_counts():
    """The sign-up and reset throttle starts from nothing (the cache outlives a test)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def logs_in(username: str, password: str) -> bool:
    """Whether the login form lets them in (a form login: axes needs the request)."""
    answer = Client().post("/accounts/login/", {"username": username, "password": password})
    return answer.status_code == 302


def link_in(mail) -> str:
    return re.search(r"https?://[^/\s]+(/\S+)", mail.body)[1]


def test_sign_up_and_reset_are_404_while_off_and_the_login_page_does_not_offer_them(
    client, settings
):
    settings.SIGNUP_ENABLED = settings.PASSWORD_RESET_ENABLED = False
    for url in OFF_URLS:
        assert client.get(url).status_code == 404, url
        assert client.post(url, {"email": "x@example.com"}).status_code == 404, url
    login = client.get("/accounts/login/").text
    assert "Create an account" not in login and "Forgot your password" not in login


def test_an_open_sign_up_makes_an_inactive_account_that_the_emailed_link_confirms(
    client, settings, mailoutbox, fresh_counts
):
    settings.SIGNUP_ENABLED = True
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert "Create an account" in client.get("/accounts/login/").text
    form = {
        "username": "newcomer",
        "email": "newcomer@example.com",
        "password1": "a long enough passphrase",
        "password2": "a long enough passphrase",
    }
    answer = client.post("/accounts/signup/", form)
    assert answer.status_code == 200 and "Check your email" in answer.text
    user = User.objects.get(username="newcomer")
    assert not user.is_active, "no account works before its address is confirmed"
    assert not logs_in("newcomer", "a long enough passphrase")
    [mail] = mailoutbox
    assert mail.to == ["newcomer@example.com"]

    confirmed = client.get(link_in(mail))
    assert confirmed.status_code == 302 and confirmed["Location"].endswith("?activated=1")
    user.refresh_from_db()
    assert user.is_active
    told = [m for m in mailoutbox if m.to == ["ops@example.com"]]
    assert len(told) == 1 and "newcomer" in told[0].subject
    assert logs_in("newcomer", "a long enough passphrase")

    again = Client().post("/accounts/signup/", {**form, "username": "twin"})
    assert again.status_code == 400 and "uses this address already" in again.text


def test_an_open_password_reset_mails_a_link_that_sets_a_new_password(
    client, settings, mailoutbox, fresh_counts, alice
):
    settings.PASSWORD_RESET_ENABLED = True
    alice.email = "alice@example.com"
    alice.save()
    assert "Forgot your password" in client.get("/accounts/login/").text
    asked = client.post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert asked.status_code == 302 and asked["Location"] == "/accounts/password_reset/done/"
    assert "Check your email" in client.get(asked["Location"]).text
    [mail] = mailoutbox
    form_page = client.get(link_in(mail), follow=True)
    assert form_page.status_code == 200 and "Set a new password" in form_page.text
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "brand new passphrase 9", "new_password2": "brand new passphrase 9"},
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    assert logs_in("alice", "brand new passphrase 9")


@pytest.mark.parametrize("url", ["/accounts/signup/", "/accounts/password_reset/"])
def test_sign_up_and_reset_requests_are_throttled_per_address(
    client, settings, mailoutbox, fresh_counts, url
):
    settings.SIGNUP_ENABLED = settings.PASSWORD_RESET_ENABLED = True
    settings.ACCOUNT_REQUESTS_PER_HOUR = 2
    codes = [
        client.post(url, {"email": f"someone{i}@example.com", "username": f"u{i}"}).status_code
        for i in range(3)
    ]
    assert codes[2] == 429 and 429 not in codes[:2]
    # The same email address from elsewhere is counted too.
    other = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(2):
        other.post(url, {"email": "target@example.com", "username": "x"})
    assert (
        Client(REMOTE_ADDR="203.0.113.8").post(url, {"email": "target@example.com"}).status_code
        == 429
    )


# --- Invites ----------------------------------------------------------------------------


def invite_form(username: str, email: str = "") -> dict:
    return {
        "username": username,
        "email": email,
        "password1": "a long enough passphrase",
        "password2": "a long enough passphrase",
    }


def test_an_admins_invite_link_makes_one_account_while_sign_up_is_closed(
    client, settings, mailoutbox, fresh_counts, django_user_model
):
    settings.SIGNUP_ENABLED = False
    settings.ADMINS = [("Ops", "ops@example.com")]
    operator = django_user_model.objects.create_superuser("op", password="op-pw")
    admin = Client()
    admin.force_login(operator)
    made = admin.post("/admin/chat/invite/add/", {"note": "for Ana", "days": 3}, follow=True)
    assert made.status_code == 200
    link = re.search(r"<code>https?://[^/<]+(/accounts/invite/[^<]+)</code>", made.text)[1]
    invite = Invite.objects.get()
    assert (invite.note, invite.created_by, invite.used_at) == ("for Ana", operator, None)
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert len(token) >= 40 and token not in invite.token_hash, "only its hash is kept"
    assert 2.9 < (invite.expires_at - invite.created_at).total_seconds() / 86400 <= 3

    assert client.get("/accounts/signup/").status_code == 404, "sign-up stays closed"
    page = client.get(link)
    assert page.status_code == 200 and "You are invited" in page.text
    joined = client.post(link, invite_form("ana"))
    assert joined.status_code == 302 and joined["Location"].endswith("?joined=1")
    assert "Your account is made" in client.get(joined["Location"]).text
    assert logs_in("ana", "a long enough passphrase")
    invite.refresh_from_db()
    assert invite.used_by == User.objects.get(username="ana") and invite.used_at is not None
    told = [m.subject for m in mailoutbox if m.to == ["ops@example.com"]]
    assert len(told) == 1 and told[0].endswith("New account: ana")

    # Once only: the link now says it was used, and makes nobody.
    for answer in (Client().get(link), Client().post(link, invite_form("eve"))):
        assert answer.status_code == 410 and "used already" in answer.text
    assert not User.objects.filter(username="eve").exists()
    assert "used" in admin.get("/admin/chat/invite/").text


def test_an_expired_or_unknown_invite_says_so_and_makes_no_account(client, fresh_counts):
    invite, token = services.invite_create(created_by=None, note="late", days=1)
    Invite.objects.filter(pk=invite.pk).update(expires_at=invite.created_at)
    for answer in (
        client.get(f"/accounts/invite/{token}/"),
        client.post(f"/accounts/invite/{token}/", invite_form("late")),
    ):
        assert answer.status_code == 410 and "expired" in answer.text
    unknown = client.post(f"/accounts/invite/{token[:-2]}xy/", invite_form("guess"))
    assert unknown.status_code == 404 and "does not work" in unknown.text
    assert not User.objects.filter(username__in=["late", "guess"]).exists()


def test_an_invites_form_refuses_bad_input_and_keeps_the_invite(client, alice, fresh_counts):
    _, token = services.invite_create(created_by=None)
    link = f"/accounts/invite/{token}/"
    taken = client.post(link, invite_form("alice"))
    mismatch = client.post(link, {**invite_form("newbie"), "password2": "something else"})
    assert taken.status_code == 400 and mismatch.status_code == 400
    assert Invite.objects.get().used_at is None
    assert client.post(link, invite_form("newbie")).status_code == 302


def test_the_invite_command_prints_a_link_that_works(client, settings, fresh_counts):
    out = io.StringIO()
    call_command(
        "invite", "--note", "cli", "--days", "2", "--site", "https://chat.example.com/", stdout=out
    )
    link = out.getvalue().strip()
    assert link.startswith("https://chat.example.com/accounts/invite/")
    path = link.removeprefix("https://chat.example.com")
    assert client.get(path).status_code == 200
    assert Invite.objects.get().note == "cli"
    with pytest.raises(CommandError):
        call_command("invite", "--days", "0", stdout=io.StringIO(), stderr=io.StringIO())
