"""The embedded offline model really generates (one small test: it loads a 100 MB model)."""

import pytest
from channels.db import database_sync_to_async

from chat.models import Thread
from tests.helpers import connect, frames_until_end, receive, reply_text, send, start_command

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def test_the_local_provider_streams_a_real_reply_from_the_embedded_model(
    memory_layer, alice, settings
):
    settings.AGENT_PROVIDER = "local"
    settings.AGENT_MODEL = ""
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("Say hello in one short sentence."))
    received = await frames_until_end(ws, timeout=120)

    start = next(f for f in received if f["type"] == "start")
    assert start["model"] == "SmolLM2-135M-Instruct"
    assert received[-1]["type"] == "complete", received[-1]
    text = reply_text(received)
    assert text.strip(), "the model said something"
    await database_sync_to_async(thread.refresh_from_db)()
    reply = await database_sync_to_async(lambda: thread.messages.get(role="assistant"))()
    assert reply.content == text and reply.status == "complete"
    assert reply.token_count and reply.token_count > 0
    await ws.disconnect()
