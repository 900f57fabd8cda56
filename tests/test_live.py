"""The live store, in process and in Redis (whose steps are Lua scripts): each step, records
written whole or not at all, healed after a Redis restart, and how long they are kept."""

import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio

from chat.engine import live

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request, settings):
    if request.param == "memory":
        yield live.MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    store = live.RedisStore(url)
    yield store
    await store._redis.aclose()


def whole(message_id: str, texts: list[str], terminal: dict | None = None) -> live.LiveReply:
    offsets, content = [0], ""
    for text in texts:
        content += text
        offsets.append(len(content))
    return live.LiveReply(message_id, "owner-a", len(texts), content, "m", offsets, terminal)


async def test_frames_append_in_order_and_a_skipped_frame_asks_for_a_restore(store):
    assert await store.claim(thread_id="t", message_id="r1", owner="owner-a", model="m")
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="Hel")
    assert await store.append(thread_id="t", message_id="r1", seq=2, text="lo")
    assert not await store.append(thread_id="t", message_id="r1", seq=4, text="!!")
    assert not await store.append(thread_id="t", message_id="other", seq=3, text="x")
    record = await store.record(thread_id="t")
    assert (record.seq, record.content, record.frame_texts(0)) == (
        2,
        "Hello",
        [(1, "Hel"), (2, "lo")],
    )


async def test_a_restore_writes_the_record_whole_unless_another_reply_holds_the_thread(store):
    assert await store.restore(thread_id="t", reply=whole("r1", ["a", "bc", "d"]))
    record = await store.record(thread_id="t")
    assert (record.message_id, record.seq, record.content) == ("r1", 3, "abcd")
    assert record.frame_texts(1) == [(2, "bc"), (3, "d")]
    # An older picture of the same reply does not roll it back.
    assert await store.restore(thread_id="t", reply=whole("r1", ["a"]))
    assert (await store.record(thread_id="t")).content == "abcd"
    # A reply in flight keeps its thread.
    assert not await store.restore(thread_id="t", reply=whole("r2", ["zz"]))
    assert not await store.claim(thread_id="t", message_id="r3", owner="o", model="m")


async def test_a_record_lost_before_its_end_is_restored_ended(store):
    assert await store.claim(thread_id="t", message_id="r1", owner="owner-a", model="m")
    await store.release(thread_id="t", message_id="r1")  # as a Redis restart would lose it
    terminal = {"type": "complete", "message_id": "r1", "seq": 3, "status": "complete"}
    assert not await store.finish(thread_id="t", message_id="r1", terminal=terminal)
    assert await store.restore(thread_id="t", reply=whole("r1", ["ab", "c"], terminal))
    record = await store.record(thread_id="t")
    assert record.done and record.terminal == terminal and record.content == "abc"
    assert await store.claim(thread_id="t", message_id="r2", owner="owner-a", model="m")


@pytest.mark.redis
async def test_a_partial_record_left_by_a_redis_restart_reads_as_none_and_blocks_no_start(
    redis_url,
):
    store = live.RedisStore(redis_url)
    raw = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)
    # What the old append did to an emptied Redis: a hash with only `seq`.
    await raw.hset("chat:live:t", mapping={"seq": 7})
    assert await store.record(thread_id="t") is None
    assert await raw.exists("chat:live:t") == 0, "healed on read"
    await raw.hset("chat:live:t", mapping={"seq": 7})
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert (await store.record(thread_id="t")).message_id == "r1"
    # An append to a record that vanished writes nothing: no partial record again.
    await raw.flushdb()
    assert not await store.append(thread_id="t", message_id="r1", seq=1, text="x")
    assert await raw.exists("chat:live:t") == 0
    await raw.aclose()
    await store._redis.aclose()


@pytest.mark.redis
async def test_a_restore_says_its_owner_is_alive(redis_url):
    store = live.RedisStore(redis_url)
    assert not await store.owner_alive(owner="owner-a")
    assert await store.restore(thread_id="t", reply=whole("r1", ["a"]))
    assert await store.owner_alive(owner="owner-a")
    await store._redis.aclose()


async def test_missing_names_the_threads_whose_record_is_not_the_replys_own(store):
    assert await store.claim(thread_id="t1", message_id="r1", owner="o", model="m")
    assert await store.claim(thread_id="t2", message_id="r2", owner="o", model="m")
    replies = {"t1": "r1", "t2": "r9", "t3": "r3"}
    assert await store.missing(replies=replies) == {"t2", "t3"}


async def test_appends_of_many_replies_at_once_each_land_in_their_own_record(store):
    """Appends made together go to Redis as one batch: each answered as if sent alone."""
    import asyncio

    threads = [f"t{i}" for i in range(30)]
    for thread_id in threads:
        assert await store.claim(thread_id=thread_id, message_id="r", owner="o", model="m")

    async def write(thread_id: str) -> list[bool]:
        return [
            await store.append(thread_id=thread_id, message_id="r", seq=seq, text=f"{seq},")
            for seq in range(1, 21)
        ]

    results = await asyncio.gather(*(write(thread_id) for thread_id in threads))
    assert all(all(appended) for appended in results)
    # One refused append among accepted ones is answered False, the others True.
    refused = await asyncio.gather(
        store.append(thread_id="t0", message_id="r", seq=21, text="ok"),
        store.append(thread_id="t1", message_id="r", seq=99, text="gap"),
        store.append(thread_id="t2", message_id="not-mine", seq=21, text="x"),
    )
    assert refused == [True, False, False]
    for thread_id in threads[1:]:
        record = await store.record(thread_id=thread_id)
        assert record.seq == 20 and record.content == "".join(f"{s}," for s in range(1, 21))


async def test_a_finished_record_is_forgotten_when_its_replay_window_ends_unread(monkeypatch):
    """In-process: a finished reply's text does not stay in memory until someone reads it."""
    import asyncio

    monkeypatch.setattr(live, "REPLAY_SECONDS", 0.05)
    store = live.MemoryStore()
    for thread_id in ("t1", "t2"):
        assert await store.claim(thread_id=thread_id, message_id="r", owner="o", model="m")
        assert await store.append(thread_id=thread_id, message_id="r", seq=1, text="x" * 1000)
        await store.finish(thread_id=thread_id, message_id="r", terminal={"seq": 2})
    assert await store.claim(thread_id="t3", message_id="r", owner="o", model="m")
    await asyncio.sleep(0.2)
    assert set(store._replies) == {"t3"}, "only the reply in flight is kept"


def terminal_of(message_id: str, seq: int) -> dict:
    return {"type": "complete", "message_id": message_id, "seq": seq, "status": "complete"}


async def test_a_claim_starts_an_empty_record_and_waits_for_the_reply_in_flight_to_end(store):
    assert await store.claim(thread_id="t", message_id="r1", owner="owner-a", model="m1")
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="old text")
    assert not await store.claim(thread_id="t", message_id="r2", owner="owner-b", model="m2")
    assert await store.finish(thread_id="t", message_id="r1", terminal=terminal_of("r1", 2))
    assert await store.claim(thread_id="t", message_id="r2", owner="owner-b", model="m2")
    record = await store.record(thread_id="t")
    assert (record.message_id, record.owner, record.model) == ("r2", "owner-b", "m2")
    assert (record.seq, record.content, record.offsets, record.done) == (0, "", [0], False)


async def test_a_finished_reply_is_kept_for_replay_but_is_no_longer_in_flight(store):
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="done")
    assert not await store.finish(thread_id="t", message_id="other", terminal=terminal_of("x", 2))
    assert (await live.snapshot(store, thread_id="t")).message_id == "r1"
    assert await store.finish(thread_id="t", message_id="r1", terminal=terminal_of("r1", 2))
    assert await live.snapshot(store, thread_id="t") is None
    record = await store.record(thread_id="t")
    assert record.done and record.terminal == terminal_of("r1", 2) and record.content == "done"


async def test_a_frame_appended_after_the_replys_end_changes_nothing(store):
    """Another process ended the reply (its owner was taken for dead): the owner's late frame
    is not written, and not refused either, so the owner does not write the record back."""
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="shown")
    assert await store.finish(thread_id="t", message_id="r1", terminal=terminal_of("r1", 2))
    assert await store.append(thread_id="t", message_id="r1", seq=2, text=" late")
    record = await store.record(thread_id="t")
    assert (record.seq, record.content, record.terminal) == (1, "shown", terminal_of("r1", 2))


async def test_a_release_forgets_only_its_own_replys_record(store):
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    await store.release(thread_id="t", message_id="not-r1")
    assert (await store.record(thread_id="t")).message_id == "r1"
    await store.release(thread_id="t", message_id="r1")
    assert await store.record(thread_id="t") is None
    assert await store.claim(thread_id="t", message_id="r2", owner="o", model="m")


async def test_a_restore_may_replace_a_finished_replys_record(store):
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert await store.finish(thread_id="t", message_id="r1", terminal=terminal_of("r1", 1))
    assert await store.restore(thread_id="t", reply=whole("r2", ["new", " reply"]))
    record = await store.record(thread_id="t")
    assert (record.message_id, record.content, record.done) == ("r2", "new reply", False)


async def test_a_finished_record_is_gone_once_its_replay_window_ends(store, monkeypatch):
    import asyncio

    monkeypatch.setattr(live, "REPLAY_SECONDS", 1)
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="x")
    assert await store.finish(thread_id="t", message_id="r1", terminal=terminal_of("r1", 2))
    assert (await store.record(thread_id="t")).done
    await asyncio.sleep(1.3)
    assert await store.record(thread_id="t") is None


async def test_the_in_process_store_has_one_owner_and_it_is_alive():
    store = live.MemoryStore()
    await store.owner_beat(owner="owner-a")
    assert await store.owner_alive(owner="owner-a")
    assert await store.owner_alive(owner="anyone"), "the only process is this one"


@pytest.mark.redis
async def test_an_owner_is_alive_while_it_beats_and_dead_once_its_beats_stop(redis_url, settings):
    import asyncio

    settings.OWNER_TTL_SECONDS = 1
    store = live.RedisStore(redis_url)
    assert not await store.owner_alive(owner="owner-a")
    await store.owner_beat(owner="owner-a")
    assert await store.owner_alive(owner="owner-a")
    assert not await store.owner_alive(owner="owner-b")
    await asyncio.sleep(1.3)
    assert not await store.owner_alive(owner="owner-a")
    await store._redis.aclose()


@pytest.mark.redis
async def test_an_appended_frame_is_published_to_the_other_processes_with_its_record(
    redis_url,
):
    store = live.RedisStore(redis_url)
    raw = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)
    pubsub = raw.pubsub()
    await pubsub.subscribe(live.BATCHED_CHANNEL)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="a", announce="one")
    # Refused (a gap, or not this reply's record): recorded nowhere, so announced nowhere.
    assert not await store.append(thread_id="t", message_id="r1", seq=3, text="c", announce="x")
    assert not await store.append(thread_id="t", message_id="r9", seq=2, text="b", announce="y")
    assert await store.append(thread_id="t", message_id="r1", seq=2, text="b")  # no announce
    assert await store.append(thread_id="t", message_id="r1", seq=3, text="c", announce="two")
    heard = []
    while (message := await pubsub.get_message(timeout=0.5)) is not None:
        heard.append(message["data"])
    assert heard == ["one", "two"]
    await pubsub.aclose()
    await raw.aclose()
    await store._redis.aclose()


@pytest.mark.redis
async def test_frames_of_many_replies_recorded_together_are_published_as_one_message(redis_url):
    """What the other processes read per turn of this one: one message, a line a frame, in
    the order the appends were made, without the refused ones."""
    import asyncio

    store = live.RedisStore(redis_url)
    raw = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)
    pubsub = raw.pubsub()
    await pubsub.subscribe(live.BATCHED_CHANNEL)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    for thread_id in ("t1", "t2", "t3"):
        assert await store.claim(thread_id=thread_id, message_id="r", owner="o", model="m")
    answers = await asyncio.gather(
        store.append(thread_id="t1", message_id="r", seq=1, text="a", announce="t1 first"),
        store.append(thread_id="t2", message_id="r", seq=5, text="gap", announce="t2 gap"),
        store.append(thread_id="t3", message_id="r", seq=1, text="c", announce="t3 first"),
        store.append(thread_id="t2", message_id="r", seq=1, text="b"),  # no announce
    )
    assert answers == [True, False, True, True]
    heard = []
    while (message := await pubsub.get_message(timeout=0.5)) is not None:
        heard.append(message["data"])
    assert heard == ["t1 first\nt3 first"]
    assert [(await store.record(thread_id=t)).content for t in ("t1", "t2", "t3")] == [
        "a",
        "b",
        "c",
    ]
    await pubsub.aclose()
    await raw.aclose()
    await store._redis.aclose()


@pytest.mark.redis
async def test_a_records_keys_expire_after_any_reply_could_run_or_its_replay_window(
    redis_url, settings
):
    """The expiry only bounds what a crash leaves behind (liveness is the owner's beat)."""
    settings.STREAM_TIMEOUT = 100
    store = live.RedisStore(redis_url)
    raw = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)
    keys = ["chat:live:t", "chat:live:t:text", "chat:live:t:offsets"]

    async def ttls() -> set[int]:
        return {await raw.ttl(key) for key in keys}

    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    assert await ttls() <= {159, 160}
    await raw.expire("chat:live:t:text", 5)
    assert await store.append(thread_id="t", message_id="r1", seq=1, text="x")
    assert await ttls() <= {159, 160}, "each frame renews all three"
    assert await store.finish(thread_id="t", message_id="r1", terminal=terminal_of("r1", 2))
    assert await ttls() <= {live.REPLAY_SECONDS, live.REPLAY_SECONDS - 1}
    assert await store.restore(thread_id="u", reply=whole("r2", ["y"], terminal_of("r2", 2)))
    assert {await raw.ttl(f"chat:live:u{suffix}") for suffix in ("", ":text", ":offsets")} <= {
        live.REPLAY_SECONDS,
        live.REPLAY_SECONDS - 1,
    }
    await raw.aclose()
    await store._redis.aclose()
