"""The generation service's promises: a bounded number of queries, checkpoints, each provider's
stream, one owner, replay. A run's own (its frames, its end, what it saves) are test_run.py's."""

import asyncio
import json
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import IntegrityError, connection, connections
from django.db.backends.utils import CursorWrapper

from chat import dbthread, frames, quota
from chat.engine import generation, live
from chat.models import Message, Thread
from tests.helpers import (
    connect,
    frames_until_end,
    new_thread,
    receive,
    reply_text,
    send,
    start_command,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def run_reply(user, message: str) -> tuple[list[dict], Message, Message]:
    """Send one message on a new thread; the frames, and the saved user message and reply."""
    thread = await new_thread(user)
    ws = await connect(thread.id, user)
    await receive(ws)
    await send(ws, start_command(message))
    received = await frames_until_end(ws, timeout=20)
    await ws.disconnect()
    user_message, reply = await database_sync_to_async(
        lambda: list(thread.messages.order_by("created_at", "id"))
    )()
    return received, user_message, reply


async def test_an_unreachable_provider_fails_the_reply_with_a_clear_error(
    memory_layer, alice, settings
):
    received, user_message, reply = await run_reply(alice, "anyone there?")
    assert received[-1]["code"] == "provider_error"
    assert "could not be reached" in received[-1]["message"]
    assert reply.status == "error" and user_message.content == "anyone there?"


async def test_the_queries_of_a_reply_do_not_grow_with_its_length(
    stub, memory_layer, alice, settings, monkeypatch
):
    settings.CHECKPOINT_SECONDS = 3600  # no checkpoint: count only the fixed cost
    # A token budget adds one UPDATE at the start and one after the last frame (test_quota).
    settings.DAILY_TOKEN_BUDGET = 0
    queries: list[str] = []
    real_execute = CursorWrapper.execute

    def counting_execute(self, sql, params=None):
        queries.append(sql)
        return real_execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting_execute)

    async def count_for(tokens: int) -> tuple[int, int]:
        """Queries of a first reply on a socket, then of a second one on it."""
        stub.script(f"size-{tokens}", tokens=["tok "] * tokens)
        # Titled already: no title work joins the count.
        thread = await new_thread(alice, "t")
        ws = await connect(thread.id, alice)
        await receive(ws)
        counts = []
        for _ in range(2):
            queries.clear()
            await send(ws, start_command(f"size-{tokens}"))
            asked = await receive(ws)  # the user's message: the reply has begun
            run = generation.registry().runs[str(thread.id)]
            received = [asked, *await frames_until_end(ws)]
            await run.task  # and has settled its tokens
            counts.append(len(queries))
            assert reply_text(received) == "tok " * tokens
        await ws.disconnect()
        return counts[0], counts[1]

    await count_for(1)  # the process reads the ModelAccess table once every few seconds
    short, long = await count_for(10), await count_for(1000)
    assert short == long, "queries per reply do not depend on its number of tokens"
    # The socket's session with its user, the thread's model with the user's own instructions
    # (settings), one transaction for the user message and the reply, the history, one final
    # write, and the model's tokens counted. The session and the user are one query once this
    # process has checked that session (auth.session_holds), two the first time; a thread's
    # first message is its whole history, read from nothing (selectors.opening_history).
    first, again = long
    assert first <= 9 and again <= 10  # the path the history follows is one query


async def test_a_start_makes_few_trips_to_the_database_thread_before_its_first_frame(
    stub, memory_layer, alice, settings, monkeypatch
):
    """On SQLite every start queues on one thread (dbthread.py), so each trip there is a turn
    in that queue: the socket's credential rides with the model's choice, the input quota
    with the token hold (none at all with no budget), then the begin's commit."""
    if connection.vendor != "sqlite":
        pytest.skip("the one database thread is SQLite's")
    trips: list[str] = []
    real = dbthread._keeping_connection

    def counting(function, args, kwargs, loop):
        trips.append(getattr(function, "__name__", repr(function)))
        return real(function, args, kwargs, loop)

    monkeypatch.setattr(dbthread, "_keeping_connection", counting)
    stub.script("trips", tokens=["t"])

    async def trips_of_a_start() -> list[str]:
        thread = await new_thread(alice, "titled")
        ws = await connect(thread.id, alice)
        await receive(ws)
        trips.clear()
        await send(ws, start_command("trips"))
        asked = await receive(ws)  # the user's message: the reply has begun
        assert asked["type"] == "message"
        begun = list(trips)
        await frames_until_end(ws)
        await ws.disconnect()
        return begun

    settings.DAILY_TOKEN_BUDGET = settings.DAILY_INPUT_BUDGET = 0
    assert await trips_of_a_start() == ["_choice", "_run_group"]
    settings.DAILY_TOKEN_BUDGET, settings.DAILY_INPUT_BUDGET = 10_000, 10_000
    assert await trips_of_a_start() == ["_choice", "reply_hold", "_run_group"]


async def test_calls_queued_together_commit_in_one_transaction_and_a_failed_one_alone(
    memory_layer, alice, monkeypatch
):
    """Group commit (dbthread.together): the begins that queue up for the SQLite thread share
    one trip and one commit, each in its own savepoint: one that raises rolls back alone."""
    if connection.vendor != "sqlite":
        pytest.skip("the one database thread is SQLite's")
    commits = 0
    real_commit = type(connections["default"]).commit

    def counting_commit(self):
        nonlocal commits
        commits += 1
        return real_commit(self)

    def made(title: str, *, fails: bool = False):
        def make() -> str:
            Thread.objects.create(owner_id=alice.pk, title=title)
            if fails:
                raise IntegrityError("refused after its write")
            return title

        return make

    gate = threading.Event()
    held = asyncio.ensure_future(dbthread.off_loop(gate.wait)())  # the thread is busy
    monkeypatch.setattr(type(connections["default"]), "commit", counting_commit)
    calls = [made("one"), made("refused", fails=True), made("three")]
    together = asyncio.gather(*(dbthread.together(call) for call in calls), return_exceptions=True)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        await asyncio.sleep(0)  # the calls start, and join the batch
    assert len(dbthread._groups[loop]) == len(calls), "queued behind the busy thread, together"
    gate.set()
    await held
    one, refused, three = await together
    assert (one, three) == ("one", "three")
    assert isinstance(refused, IntegrityError)
    assert commits == 1, "one transaction for the three"
    titles = await database_sync_to_async(
        lambda: set(Thread.objects.filter(owner=alice).values_list("title", flat=True))
    )()
    assert titles == {"one", "three"}, "the refused call's write was rolled back, alone"


async def test_a_long_reply_is_checkpointed_every_interval_not_per_token(
    stub, memory_layer, alice, settings, monkeypatch
):
    settings.CHECKPOINT_SECONDS = 0.2
    saved: list[str] = []
    from chat import services

    real = services.replies_checkpoint

    def spy(*, contents):
        saved.extend(contents.values())
        real(contents=contents)

    monkeypatch.setattr(services, "replies_checkpoint", spy)
    stub.script("checkpointed", tokens=["x"] * 100, delay_ms=10)
    received, _, reply = await run_reply(alice, "checkpointed")
    tokens = sum(f["type"] == "token" for f in received)
    assert 2 <= len(saved) < tokens, "a few checkpoints, far fewer than frames"
    assert all(reply.content.startswith(text) for text in saved)
    assert saved == sorted(saved, key=len), "each checkpoint has at least the text of the last"


async def test_the_replies_of_a_process_are_checkpointed_together_in_one_write_per_tick(
    stub, memory_layer, alice, settings, monkeypatch
):
    from chat import services

    settings.CHECKPOINT_SECONDS = 0.2
    batches: list[dict] = []
    real = services.replies_checkpoint

    def spy(*, contents):
        batches.append(dict(contents))
        real(contents=contents)

    monkeypatch.setattr(services, "replies_checkpoint", spy)
    stub.script("together", tokens=["y"] * 100, delay_ms=10)
    settings.MAX_REPLIES_IN_FLIGHT = 4
    results = await asyncio.gather(*(run_reply(alice, "together") for _ in range(4)))
    assert max(len(batch) for batch in batches) >= 2, "replies in flight share a write"
    per_reply = sum(len(batch) for batch in batches)
    assert len(batches) < per_reply, "fewer writes than one per reply per tick"
    for _, _, reply in results:
        saved = [batch[reply.id] for batch in batches if reply.id in batch]
        assert saved and all(reply.content.startswith(text) for text in saved)


async def test_the_openai_provider_streams_through_the_responses_api(
    stub, memory_layer, alice, settings
):
    settings.AGENT_PROVIDER = "openai"
    settings.AGENT_MODEL = "gpt-test"
    stub.script("responses-api", tokens=["Via", " the", " Responses", " API"], delay_ms=5)
    received, _, reply = await run_reply(alice, "responses-api")
    assert received[-1]["type"] == "complete", received[-1]
    assert reply_text(received) == reply.content == "Via the Responses API"
    assert reply.model == "gpt-test" and reply.token_count == 4
    sent = [r for r in stub.requests if r["path"] == "/v1/responses"][0]
    assert sent["body"]["stream"] is True and sent["body"]["model"] == "gpt-test"
    # The stub records only requests that carried its key (test-key), and never shows it.
    assert sent["headers"]["authorization"] == "Bearer <redacted>"


@pytest.mark.parametrize("provider", ["compatible", "openai"])
async def test_a_new_threads_title_is_one_plain_request_to_the_replys_model(
    stub, memory_layer, alice, settings, provider
):
    """Not a second agent run: one request, no tools, no stream, at most TITLE_MAX_TOKENS."""
    if provider == "openai":
        settings.AGENT_PROVIDER, settings.AGENT_MODEL = "openai", "gpt-test"
    thread = await new_thread(alice)
    ws = await connect(thread.id, alice)
    await receive(ws)
    await send(ws, start_command("Name this thread"))
    await frames_until_end(ws)
    assert (await receive(ws))["thread"]["title"] == "Name this thread"  # cut from the message
    titled = (await receive(ws))["thread"]["title"]  # then the model's
    await ws.disconnect()
    assert titled.startswith("Echo: Write a short title")
    asked = [r["body"] for r in stub.requests if "Write a short title" in json.dumps(r["body"])]
    assert len(asked) == 1, "one request for the title"
    (body,) = asked
    assert not body.get("stream") and not body.get("tools")
    if provider == "openai":
        assert body["model"] == "gpt-test" and body["max_output_tokens"] == quota.TITLE_MAX_TOKENS
    else:
        assert body["max_tokens"] == quota.TITLE_MAX_TOKENS
        assert [m["role"] for m in body["messages"]] == ["system", "user"]


async def test_the_openai_provider_saves_an_in_stream_error_with_the_text_shown(
    stub, memory_layer, alice, settings
):
    settings.AGENT_PROVIDER = "openai"
    stub.script("responses-fail", tokens=["Half", " a", " reply"], error_after=2)
    received, _, reply = await run_reply(alice, "responses-fail")
    assert received[-1]["type"] == "error" and received[-1]["code"] == "provider_error"
    assert reply.status == "error" and reply.content == "Half a" == reply_text(received)


@pytest.mark.redis
async def test_replies_started_together_on_a_fresh_process_name_one_owner_that_beats(
    stub, redis_url, settings, alice
):
    """Their owner must be the channel the process says is alive, or another process takes
    them for dead once OWNER_TTL_SECONDS pass."""
    from tests.conftest import _close_layer, _use_layer

    _use_layer(settings, redis_url, "pubsub")
    settings.MAX_REPLIES_IN_FLIGHT = 0  # six at once, from one user
    stub.script("together", tokens=["x"] * 50, delay_ms=20)
    threads = [await new_thread(alice) for _ in range(6)]
    try:
        await asyncio.gather(
            *(
                generation.reply_begin(
                    user_id=alice.pk,
                    thread_id=str(t.id),
                    ask=generation.ask_for({"command": "start", "message": "together"}),
                )
                for t in threads
            )
        )
        store = live.store()
        owners = {(await store.record(thread_id=str(t.id))).owner for t in threads}
        assert owners == {generation.registry().channel}
        assert await store.owner_alive(owner=generation.registry().channel)
    finally:
        await _close_layer()


@pytest.mark.parametrize(
    "provider, path, field",
    [
        ("compatible", "/v1/chat/completions", "max_tokens"),
        ("openai", "/v1/responses", "max_output_tokens"),
    ],
)
async def test_every_reply_asks_the_provider_for_at_most_reply_max_tokens(
    stub, memory_layer, alice, settings, provider, path, field
):
    settings.AGENT_PROVIDER = provider
    settings.REPLY_MAX_TOKENS = 321
    stub.script("bounded", tokens=["ok"], delay_ms=1)
    received, _, _ = await run_reply(alice, "bounded")
    assert received[-1]["type"] == "complete"
    sent = [r for r in stub.requests if r["path"] == path and r["body"].get("stream")]
    assert sent and sent[-1]["body"][field] == 321


def shown(replayed: list[dict] | None) -> list[tuple] | None:
    """What a client is told by replayed frames, without their send times."""
    if replayed is None:
        return None
    return [(f["type"], f["seq"], f.get("token", f.get("status"))) for f in replayed]


async def record_reply(*texts: str, done: bool = False) -> None:
    """Reply r1 on thread t in the live store with these frames, ended after them if `done`."""
    store = live.store()
    assert await store.claim(thread_id="t", message_id="r1", owner="o", model="m")
    for seq, text in enumerate(texts, start=1):
        assert await store.append(thread_id="t", message_id="r1", seq=seq, text=text)
    if done:
        metrics = frames.metrics(tokens=len(texts), elapsed_ms=5, first_token_ms=1)
        terminal = frames.complete(
            message_id="r1", seq=len(texts) + 1, status="complete", metrics=metrics
        )
        assert await store.finish(thread_id="t", message_id="r1", terminal=terminal)


async def replay(after_seq: int, message_id: str | None = "r1") -> list[tuple] | None:
    return shown(
        await generation.thread_replay(thread_id="t", message_id=message_id, after_seq=after_seq)
    )


async def test_a_reply_in_flight_is_replayed_from_any_seq_it_has_sent(layer):
    await record_reply("Hel", "lo ", "you")
    tokens = [("token", 1, "Hel"), ("token", 2, "lo "), ("token", 3, "you")]
    assert await replay(-1) == [("start", 0, None), *tokens], "from the start: `start` too"
    assert await replay(0) == tokens
    assert await replay(1) == tokens[1:]
    assert await replay(3) == [], "up to date"
    assert await replay(1, message_id=None) == tokens[1:], "no message_id: the latest reply"


async def test_a_replay_that_cannot_be_exact_is_refused_so_the_client_starts_over(layer):
    assert await replay(-1) is None, "nothing recorded"
    await record_reply("Hel", "lo")
    assert await replay(3) is None, "past the last frame sent"
    assert await replay(0, message_id="another-reply") is None


async def test_a_finished_reply_is_replayed_to_its_end_until_its_window_ends(layer, monkeypatch):
    monkeypatch.setattr(live, "REPLAY_SECONDS", 1)
    await record_reply("Hel", "lo", done=True)
    assert await replay(0) == [("token", 1, "Hel"), ("token", 2, "lo"), ("complete", 3, "complete")]
    assert await replay(2) == [("complete", 3, "complete")]
    assert await replay(3) == [], "the end was seen"
    assert await replay(4) is None
    await asyncio.sleep(1.3)
    assert await replay(0) is None, "forgotten: the saved message tells the rest"
