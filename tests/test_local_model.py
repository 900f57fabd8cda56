"""The embedded offline model really generates, several replies at once (one small test: it
loads a 100 MB model)."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, Thread
from tests.helpers import connect, frames_until_end, receive, reply_text, send, start_command

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def test_the_local_provider_streams_real_replies_from_the_embedded_model_at_once(
    memory_layer, alice, settings
):
    settings.AGENT_PROVIDER = "local"
    settings.AGENT_MODEL = ""
    threads = [
        await database_sync_to_async(Thread.objects.create)(owner=alice, title=f"t{i}")
        for i in range(2)
    ]
    sockets = [await connect(thread.id, alice) for thread in threads]
    for ws in sockets:
        await receive(ws)
    for ws, question in zip(sockets, ["Say hello.", "Name a colour."], strict=True):
        await send(ws, start_command(question))
    replies = await asyncio.gather(*(frames_until_end(ws, timeout=120) for ws in sockets))

    for thread, received in zip(threads, replies, strict=True):
        start = next(f for f in received if f["type"] == "start")
        assert start["model"] == "SmolLM2-135M-Instruct"
        assert received[-1]["type"] == "complete", received[-1]
        text = reply_text(received)
        assert text.strip(), "the model said something"
        reply = await database_sync_to_async(
            lambda t=thread: Message.objects.get(thread=t, role="assistant")
        )()
        assert reply.content == text and reply.status == "complete"
        assert reply.token_count and reply.token_count > 0
    for ws in sockets:
        await ws.disconnect()


async def test_the_embedded_server_answers_only_its_own_process():
    """No key, no answer (any local process, or a page rebound to 127.0.0.1), and no other
    site may read what it says."""
    import httpx

    from chat import local_model

    url = await asyncio.to_thread(local_model.base_url)
    async with httpx.AsyncClient() as client:
        anonymous = await client.get(url + "/models", headers={"Origin": "http://evil.example"})
        assert anonymous.status_code == 401
        keyed = await client.get(
            url + "/models",
            headers={"Authorization": f"Bearer {local_model.api_key()}", "Origin": "http://x"},
        )
        assert keyed.status_code == 200
        assert keyed.headers.get("access-control-allow-origin", "") in ("", "null")
        assert keyed.headers.get("access-control-allow-credentials", "false") == "false"
