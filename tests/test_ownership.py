"""ownership.py: replies whose process died are ended by a sweep nobody has to trigger, one
process per database at a time."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import runtime
from chat.engine import ownership
from chat.engine.live import MemoryStore, RedisStore
from chat.models import Message
from tests.conftest import REDIS_TEST_URL, require, tcp_open
from tests.helpers import new_thread

pytestmark = pytest.mark.asyncio


@pytest.mark.django_db(transaction=True)
async def test_a_sweep_ends_a_reply_left_streaming_by_a_process_that_died(memory_layer, alice):
    thread = await new_thread(alice, "left behind", "question")
    orphan = await database_sync_to_async(Message.objects.create)(
        thread=thread, role="assistant", status="streaming", content="half an ans"
    )
    assert await ownership.reap_all() == 1
    await database_sync_to_async(orphan.refresh_from_db)()
    assert orphan.status == "interrupted" and orphan.content == "half an ans"
    assert orphan.token_count == 3, "what it showed is charged"
    assert await ownership.reap_all() == 0
    await runtime.close()


@pytest.mark.redis
async def test_one_process_per_database_sweeps_in_a_period():
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    clients = [runtime.connect_redis(REDIS_TEST_URL) for _ in range(2)]
    a, b = (RedisStore(client) for client in clients)
    try:
        turns = [await a.sweep_turn(seconds=0.5), await b.sweep_turn(seconds=0.5)]
        assert turns == [True, False]
        await asyncio.sleep(0.6)
        assert await b.sweep_turn(seconds=0.5), "the next period, whoever asks first"
        assert await MemoryStore().sweep_turn(seconds=0.5), "one process: always its turn"
    finally:
        for client in clients:
            await client.aclose()
