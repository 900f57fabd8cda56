"""Django admin: threads searchable, replies in flight listed and force-stoppable."""

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from chat import quota
from chat.models import Message, Thread
from tests.helpers import connect, frames_until_end, receive, send, start_command


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_superuser("op", password="op-pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_threads_are_found_by_the_text_of_their_messages(operator, alice):
    thread = Thread.objects.create(owner=alice, title="Trip")
    Message.objects.create(thread=thread, role="user", content="pack the umbrella")
    Thread.objects.create(owner=alice, title="Other")
    page = operator.get(reverse("admin:chat_thread_changelist"), {"q": "umbrella"})
    assert page.status_code == 200
    assert "Trip" in page.text and "Other" not in page.text
    detail = operator.get(reverse("admin:chat_thread_change", args=[thread.pk]))
    assert "pack the umbrella" in detail.text


@pytest.mark.django_db
def test_an_operator_sees_each_users_tokens_today_and_what_is_left(operator, alice, settings):
    settings.DAILY_TOKEN_BUDGET = 1000
    hold = quota.reserve(user_id=alice.pk, tokens=300)
    quota.settle(hold, spent=120)
    quota.reserve(user_id=alice.pk, tokens=200)  # a reply still running
    page = operator.get(reverse("admin:chat_tokenusage_changelist"))
    assert page.status_code == 200
    row = page.text[page.text.index("alice") :]
    for shown in ("120", "200", "680"):  # used, held, remaining
        assert f">{shown}<" in row[:2000], shown


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_operator_lists_a_reply_in_flight_and_force_stops_it(
    stub, memory_layer, alice, operator
):
    stub.script("never-ending", tokens=["more "] * 500, delay_ms=20)
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("never-ending"))
    while (await receive(ws))["type"] != "token":
        pass
    reply = await database_sync_to_async(
        lambda: Message.objects.get(thread=thread, role="assistant")
    )()

    url = reverse("admin:chat_replyinflight_changelist")
    listing = await sync_to_async(operator.get)(url)
    assert str(reply.id) in listing.text
    await sync_to_async(operator.post)(
        url, {"action": "force_stop", "_selected_action": [str(reply.id)]}
    )
    received = await frames_until_end(ws)
    assert received[-1]["type"] == "complete" and received[-1]["status"] == "cancelled"
    await database_sync_to_async(reply.refresh_from_db)()
    assert reply.status == "cancelled"
    listing = await sync_to_async(operator.get)(url)
    assert str(reply.id) not in listing.text
    await ws.disconnect()
