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


async def test_open_standings_share_one_watch_and_one_check_per_credential(
    memory_layer, alice, bob, settings
):
    """However many sockets are open, their credentials are watched by one task (no task, no
    timer per socket), and an announcement checks each credential once for every socket that
    shares it: the sockets of a session that ended all lose, the others stay."""
    settings.MAX_SOCKETS_PER_USER = 0
    settings.SESSION_CHECK_SECONDS = 3600  # only the announcement checks
    tasks_before = len(asyncio.all_tasks())
    lost = []
    all_lost = asyncio.Event()

    def on_lost_of(name: str):
        async def on_lost() -> None:
            lost.append(name)
            if len(lost) == 49:
                all_lost.set()

        return on_lost

    gone = auth.Credential(alice.pk, session_key="no-such-session")
    bobs_gone = auth.Credential(bob.pk, session_key="gone-too")
    alices = [Standing(gone, on_lost_of(f"alice-{i}"), transport="websocket") for i in range(50)]
    bobs = Standing(bobs_gone, on_lost_of("bob"), transport="websocket")
    for each in [*alices, bobs]:
        assert await each.open()
    # One task watches them all (and one more is the collector's freezer: collector.py).
    assert len(asyncio.all_tasks()) <= tasks_before + 2, "one task watches them all"

    checked = []
    still_valid = auth.Credential.still_valid

    def counting(credential: auth.Credential) -> bool:
        checked.append(credential)
        return still_valid(credential)

    auth.Credential.still_valid = counting
    try:
        await alices[-1].close()  # closed: no longer watched
        await standing.credentials_changed(user_id=alice.pk)
        await asyncio.wait_for(all_lost.wait(), 10)
    finally:
        auth.Credential.still_valid = still_valid
    assert sorted(lost) == sorted(f"alice-{i}" for i in range(49))
    assert checked == [gone], "one check for the 49 sockets of one credential"
    assert all(s.lost for s in alices[:49]) and not alices[-1].lost and not bobs.lost
    for each in [*alices, bobs]:
        await each.close()
