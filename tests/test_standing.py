"""standing.py: a socket or stream counts among its user's while open, and ends as soon as an
announcement says its credential may have changed and it no longer holds."""

import asyncio

import pytest

from chat import auth, standing
from chat.standing import Standing

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_standing_is_counted_and_ends_when_an_announcement_finds_its_credential_gone(
    memory_layer, alice, bob, settings
):
    settings.MAX_SOCKETS_PER_USER = 1
    settings.SESSION_CHECK_SECONDS = 3600  # only the announcement can end it
    lost = asyncio.Event()

    async def on_lost() -> None:
        lost.set()

    gone = auth.Credential(alice.pk, session_key="no-such-session")
    first = Standing(gone, on_lost, transport="websocket")
    assert await first.open()
    assert not await Standing(gone, on_lost, transport="websocket").open(), "one socket allowed"
    bobs_lost = asyncio.Event()

    async def bob_lost() -> None:
        bobs_lost.set()

    bobs = Standing(auth.Credential(bob.pk, session_key="gone-too"), bob_lost, transport="sse")
    assert await bobs.open(), "another user's count"

    await standing.credentials_changed(user_id=bob.pk)
    await asyncio.wait_for(bobs_lost.wait(), 5)
    assert not lost.is_set(), "another user's announcement checks nothing of alice's"
    await standing.credentials_changed(user_id=alice.pk)
    await asyncio.wait_for(lost.wait(), 5)
    assert first.lost

    await first.close()
    again = Standing(gone, on_lost, transport="websocket")
    assert await again.open(), "closing counted it out"
    await again.close()
    await bobs.close()
