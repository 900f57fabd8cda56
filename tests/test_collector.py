"""collector.py: after a burst of sockets opens, what they keep is frozen out of the garbage
collector's full collections; once a quarter of them have closed, one collection takes back
what they left frozen."""

import gc
import weakref

import pytest

from chat import collector
from chat.consumers import ThreadConsumer
from tests.helpers import connect, new_thread, receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def tracked_consumers() -> list[ThreadConsumer]:
    """The consumers the collector's generations hold (frozen ones are in none of them)."""
    # `type`, not isinstance: a lazy object would be evaluated (a query) to answer that.
    return [o for o in gc.get_objects() if type(o) is ThreadConsumer]


async def test_a_burst_of_sockets_is_frozen_and_what_closed_ones_leave_is_collected(
    memory_layer, alice, settings
):
    settings.MAX_SOCKETS_PER_USER = 0
    settings.GC_FREEZE_SOCKETS = 10
    gc.unfreeze()
    gc.collect()
    try:
        earlier = {id(c) for c in tracked_consumers()}  # other tests' (none, or still closing)
        threads = [await new_thread(alice) for _ in range(20)]
        opened = []
        for thread in threads:
            opened.append(await connect(thread.id, alice))
            assert (await receive(opened[-1]))["type"] == "ready"
        consumers = [weakref.ref(c) for c in tracked_consumers() if id(c) not in earlier]
        assert len(consumers) == 20
        frozen_before = gc.get_freeze_count()

        freezer = collector.freezer()
        freezer.turn(freezer.changed + collector.QUIET_SECONDS)
        # Every open socket's objects are out of the full collections' sight.
        assert not any(ref() in tracked_consumers() for ref in consumers)
        assert gc.get_freeze_count() - frozen_before >= 20 * 50

        closing = opened[:11]
        del opened[:11]
        for ws in closing:
            await ws.disconnect()
        del closing
        gc.collect()
        # Frozen, the closed sockets' consumers (in cycles with their subscribers) stay.
        assert sum(ref() is not None for ref in consumers) == 20

        freezer.turn(freezer.changed + collector.QUIET_SECONDS)
        # Past a quarter closed (and GC_FREEZE_SOCKETS): one collection took back what they
        # left; the open ones are frozen again.
        assert sum(ref() is not None for ref in consumers) == 9
        assert not any(ref() in tracked_consumers() for ref in consumers)
        for ws in opened:
            await ws.disconnect()
    finally:
        gc.unfreeze()


async def test_nothing_is_frozen_when_it_is_turned_off(memory_layer, alice, settings):
    settings.MAX_SOCKETS_PER_USER = 0
    settings.GC_FREEZE_SOCKETS = 0
    gc.unfreeze()
    try:
        threads = [await new_thread(alice) for _ in range(3)]
        opened = [await connect(thread.id, alice) for thread in threads]
        freezer = collector.freezer()
        assert freezer.turn(freezer.changed + collector.QUIET_SECONDS) is None
        assert gc.get_freeze_count() == 0
        for ws in opened:
            await ws.disconnect()
    finally:
        gc.unfreeze()
