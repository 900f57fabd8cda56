"""ChatKit's server protocol on `POST /api/chatkit`, over a real daphne: the package's own
request types in, its own event types out, every reply written by our engine."""

import asyncio
import io
import json
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from chatkit.types import (
    AttachmentDeleteParams,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    ErrorEvent,
    ItemsFeedbackReq,
    NoticeEvent,
    ThreadCreatedEvent,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadsDeleteReq,
    ThreadsListReq,
    ThreadsUpdateReq,
    ThreadUpdatedEvent,
)
from PIL import Image
from websockets.asyncio.client import connect as ws_connect

from tests import chatkit_client as ck
from tests.servers import cookie_header, login, stub_site

UPLOAD_LIMIT = 100_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio,
    pytest.mark.site(
        {"alice": "alice-pw", "bob": "bob-pw"},
        SSE_HEARTBEAT_SECONDS="0.5",
        MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
        AGENT_VISION_MODELS="stub-model",
    ),
]


@pytest.fixture
def alice(site):
    return login(site.url, "alice", "alice-pw")


@pytest_asyncio.fixture
async def chatkit(site, alice):
    client = ck.ChatKitClient(site.url, alice)
    yield client
    await client.close()


async def socket(site, http, thread_id: str):
    ws = await ws_connect(
        f"{site.ws_url}/ws/threads/{thread_id}/",
        origin=site.url,
        additional_headers={"Cookie": cookie_header(http)},
    )
    assert json.loads(await ws.recv())["type"] == "ready"
    return ws


async def reply_frames(ws) -> list[dict]:
    """A socket's frames up to the end of the next reply."""
    received = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        received.append(frame)
        if frame["type"] == "complete" or (frame["type"] == "error" and "message_id" in frame):
            return received


def saved(http, thread_id: str) -> list[dict]:
    return http.get(f"/api/threads/{thread_id}/messages/").json()["results"]


async def test_a_chatkit_reply_is_the_engines_reply_seen_by_sockets_and_the_page(
    site, stub, alice, chatkit
):
    stub.script("first", tokens=["Hello", " there", "!"])
    stub.script("second", tokens=[f" t{i}" for i in range(40)], delay_ms=5)

    events = await chatkit.stream(ck.create("first question"))
    created = next(e for e in events if isinstance(e, ThreadCreatedEvent))
    thread_id = created.thread.id
    assert "".join(ck.deltas(events)) == "Hello there!"
    titled = next(e.thread for e in events if isinstance(e, ThreadUpdatedEvent))
    assert titled.title == "first question"  # the model's title comes later, to the page
    ws = await socket(site, alice, thread_id)

    streaming = asyncio.create_task(chatkit.stream(ck.add_message(thread_id, "second")))
    on_socket = await reply_frames(ws)
    events = await streaming
    await ws.close()

    # Text delta for token frame, the same chunks in the same order.
    assert ck.deltas(events) == [f["token"] for f in on_socket if f["type"] == "token"]
    user_message = next(f["message"] for f in on_socket if f["type"] == "message")
    assert user_message["content"] == "second"
    done = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)]
    assert [item.type for item in done] == ["user_message", "assistant_message"]
    # Item ids are our message ids: the page, the API and ChatKit name the same rows.
    assert done[0].id == user_message["id"]
    assert done[1].id == on_socket[-1]["message_id"]
    messages = saved(alice, thread_id)
    assert [m["id"] for m in messages[-2:]] == [done[0].id, done[1].id]
    assert messages[-1]["status"] == "complete"
    assert messages[-1]["content"] == done[1].content[0].text == "".join(ck.deltas(events))
    assert messages[-1]["metrics"]["totalTokens"] > 0

    # The thread is one of the page's threads, under the title ChatKit shows.
    listed = {t["id"]: t["title"] for t in alice.get("/api/threads/").json()["results"]}
    assert listed[thread_id] == (await chatkit.call(ck.get_thread(thread_id)))["title"]
    assert listed[thread_id]


async def test_threads_started_anywhere_list_and_load_in_chatkit_with_distinct_item_ids(
    site, stub, alice, chatkit
):
    """The package's trap with Chat Completions models (every assistant item `__fake_id__`,
    each reply overwriting the last) does not arise: a reply's id is its row's."""
    stub.script("page", tokens=["From", " the page"])
    stub.script("again", tokens=["And", " again"])
    thread_id = alice.post("/api/threads/", json={"title": "Started on the page"}).json()["id"]
    ws = await socket(site, alice, thread_id)
    await ws.send(
        json.dumps({"command": "start", "message": "page", "client_id": str(uuid.uuid4())})
    )
    await reply_frames(ws)
    await ws.close()
    await chatkit.stream(ck.add_message(thread_id, "again"))

    listed = await chatkit.call(ThreadsListReq(params={"limit": 50}))
    assert thread_id in [t["id"] for t in listed["data"]]
    thread = await chatkit.call(ck.get_thread(thread_id))
    assert thread["title"] == "Started on the page"
    texts = [(i["type"], i["content"][0]["text"]) for i in thread["items"]["data"]]
    assert texts == [
        ("user_message", "page"),
        ("assistant_message", "From the page"),
        ("user_message", "again"),
        ("assistant_message", "And again"),
    ]
    ids = [i["id"] for i in thread["items"]["data"]]
    assert ids == [m["id"] for m in saved(alice, thread_id)]

    # Paged newest first, two at a time, the cursor being an item id.
    first = await chatkit.call(ck.list_items(thread_id, limit=2, order="desc"))
    assert [i["id"] for i in first["data"]] == ids[:1:-1] and first["has_more"]
    rest = await chatkit.call(ck.list_items(thread_id, limit=2, order="desc", after=first["after"]))
    assert [i["id"] for i in rest["data"]] == ids[1::-1] and not rest["has_more"]

    # The reply's history went to the model as plain text, not ChatKit's output_text parts.
    asked = [r for r in stub.requests if r["path"].endswith("/chat/completions")][-1]
    history = asked["body"]["messages"]
    assert {"role": "assistant", "content": "From the page"} in history


async def test_stop_from_chatkit_is_a_dropped_request_and_the_shown_text_is_saved(
    site, stub, alice, chatkit
):
    stub.script("long", tokens=[f" w{i}" for i in range(400)], delay_ms=15)
    thread_id = (await chatkit.call(ThreadsListReq(params={})))["data"][0]["id"]
    shown = ""
    async for event in chatkit.events(ck.add_message(thread_id, "long")):
        shown += "".join(ck.deltas([event]))
        if len(shown) > 20:
            break  # ChatKit's Stop: the request is dropped

    reply = await _ended(alice, thread_id)
    assert reply["status"] == "cancelled"
    assert reply["content"].startswith(shown)
    assert len(reply["content"]) < len("".join(f" w{i}" for i in range(400)))
    items = (await chatkit.call(ck.list_items(thread_id, order="desc", limit=1)))["data"]
    assert items[0]["id"] == reply["id"]
    assert items[0]["content"][0]["text"] == reply["content"]


async def _ended(http, thread_id: str) -> dict:
    for _ in range(100):
        reply = saved(http, thread_id)[-1]
        if reply["status"] != "streaming":
            return reply
        await asyncio.sleep(0.1)
    raise AssertionError("the reply never ended")


async def test_rename_retry_and_delete(site, stub, alice, chatkit):
    stub.script("retry me", tokens=["First", " answer"], times=1)
    events = await chatkit.stream(ck.create("retry me"))
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    user_item = next(e.item for e in events if isinstance(e, ThreadItemDoneEvent))
    first_reply = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)][-1]

    renamed = await chatkit.call(ThreadsUpdateReq(params={"thread_id": thread_id, "title": "Mine"}))
    assert renamed["title"] == "Mine"
    assert alice.get(f"/api/threads/{thread_id}/").json()["title"] == "Mine"

    stub.script("retry me", tokens=["Second", " answer"])
    events = await chatkit.stream(ck.retry(thread_id, user_item.id))
    assert "".join(ck.deltas(events)) == "Second answer"
    messages = saved(alice, thread_id)
    assert [m["content"] for m in messages] == ["retry me", "Second answer"]
    assert messages[-1]["siblings"]["ids"] == [first_reply.id, messages[-1]["id"]], (
        "a retry is a new branch: the first answer is kept beside it"
    )
    items = await chatkit.call(ck.list_items(thread_id, order="asc"))
    assert [i["id"] for i in items["data"]] == [m["id"] for m in messages], "the active path"

    assert await chatkit.call(ThreadsDeleteReq(params={"thread_id": thread_id})) == {}
    assert alice.get(f"/api/threads/{thread_id}/").status_code == 404


async def test_another_users_thread_is_refused_for_every_request(site, stub, alice, chatkit):
    stub.script("private", tokens=["Secret", " reply"])
    events = await chatkit.stream(ck.create("private"))
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    user_item = next(e.item for e in events if isinstance(e, ThreadItemDoneEvent))
    bob = ck.ChatKitClient(site.url, login(site.url, "bob", "bob-pw"))
    try:
        for request in (
            ck.get_thread(thread_id),
            ck.list_items(thread_id),
            ck.add_message(thread_id, "let me in"),
            ck.retry(thread_id, user_item.id),
            ThreadsUpdateReq(params={"thread_id": thread_id, "title": "owned"}),
            ThreadsDeleteReq(params={"thread_id": thread_id}),
            ItemsFeedbackReq(
                params={"thread_id": thread_id, "item_ids": [user_item.id], "kind": "negative"}
            ),
        ):
            answer = await bob.post(request)
            assert answer.status_code == 404, (request.type, answer.text)
        listed = await bob.call(ThreadsListReq(params={}))
        assert thread_id not in [t["id"] for t in listed["data"]]
    finally:
        await bob.close()
    assert [m["content"] for m in saved(alice, thread_id)] == ["private", "Secret reply"]
    assert alice.get(f"/api/threads/{thread_id}/").json()["title"] != "owned"


async def test_bad_requests_are_answered_with_errors_never_a_500(site, stub, alice, chatkit):
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    log_size = site.log.stat().st_size
    for body, status in (
        (b"not json", 400),
        ("[]", 400),
        (json.dumps({"type": "threads.explode", "params": {}}), 400),
        (json.dumps({"type": "threads.get_by_id", "params": {}}), 400),
        (json.dumps({"type": "threads.get_by_id", "params": {"thread_id": "nope"}}), 404),
        (ck.get_thread(str(uuid.uuid4())).model_dump_json(), 404),
        (ck.retry(thread_id, str(uuid.uuid4())).model_dump_json(), 404),
        (ck.list_items(thread_id, after="nope").model_dump_json(), 404),
        (json.dumps({"type": "attachments.delete", "params": {"attachment_id": "nope"}}), 404),
        (
            json.dumps(
                {
                    "type": "threads.custom_action",
                    "params": {"thread_id": thread_id, "action": {"type": "x", "payload": {}}},
                }
            ),
            400,
        ),
    ):
        answer = await chatkit.post(body)
        assert answer.status_code == status, (body, answer.status_code, answer.text)
        assert answer.json()

    anonymous = ck.ChatKitClient(site.url)
    try:
        assert (await anonymous.post(ck.get_thread(thread_id))).status_code == 401
        forged = ck.ChatKitClient(site.url, Authorization="Bearer cs_forged")
        assert (await forged.post(ck.get_thread(thread_id))).status_code == 401
        await forged.close()
    finally:
        await anonymous.close()
    cookie_only = ck.ChatKitClient(site.url, None, Cookie=cookie_header(alice))
    try:  # a session without its CSRF token (a cross-site form, say)
        assert (await cookie_only.post(ck.get_thread(thread_id))).status_code == 403
    finally:
        await cookie_only.close()
    assert alice.get("/api/chatkit").status_code == 405
    assert "Traceback" not in site.log.read_text()[log_size:]


async def thread_ids(chatkit) -> set[str]:
    return {t["id"] for t in (await chatkit.call(ThreadsListReq(params={"limit": 100})))["data"]}


def only_error(events: list) -> ErrorEvent:
    """A refusal: one `error` event, nothing before it (no thread, no item echoed)."""
    assert [e.type for e in events] == ["error"], [e.type for e in events]
    assert events[0].message
    return events[0]


async def test_a_refused_message_is_one_error_event_and_nothing_is_saved(
    site, stub, alice, chatkit
):
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    log_size = site.log.stat().st_size
    for text in ("   ", "x" * 16_001):
        error = only_error(await chatkit.stream(ck.add_message(thread_id, text)))
        assert not error.allow_retry
    assert "16001 characters; the limit is 16000" in error.message
    assert saved(alice, thread_id) == []
    assert "Traceback" not in site.log.read_text()[log_size:]


async def test_a_refused_create_is_one_error_event_and_saves_no_thread(site, stub, alice, chatkit):
    before = await thread_ids(chatkit)
    log_size = site.log.stat().st_size
    for _ in range(3):
        error = only_error(await chatkit.stream(ck.create("x" * 16_001)))
        assert "the limit is 16000" in error.message and not error.allow_retry
    only_error(await chatkit.stream(ck.create("   ")))

    # An attachment id that is none of ours: refused, by name, before anything.
    with_file = ck.create("see the file")
    with_file.params.input.attachments = ["att_123"]
    error = only_error(await chatkit.stream(with_file))
    assert "`attachments` must be a UUID" in error.message
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    with_file = ck.add_message(thread_id, "see the file")
    with_file.params.input.attachments = [str(uuid.uuid4())]
    assert "attachment is not yours" in only_error(await chatkit.stream(with_file)).message
    assert saved(alice, thread_id) == []

    assert await thread_ids(chatkit) == before | {thread_id}
    assert "Traceback" not in site.log.read_text()[log_size:]


async def test_a_huge_message_is_refused_cleanly_before_it_is_echoed(site, stub, alice, chatkit):
    """Two million characters (beyond SLOW_READER_BYTES if echoed back), and a body beyond
    the request size limit: each an `error` event that ChatKit shows, never a reset."""
    before = await thread_ids(chatkit)
    log_size = site.log.stat().st_size
    error = only_error(await chatkit.stream(ck.create("x" * 2_000_000)))
    assert "2000000 characters; the limit is 16000" in error.message

    answer = await chatkit.post(ck.create("y" * 3_000_000))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "text/event-stream"
    )
    lines = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    error = only_error([ck.EVENT.validate_json(line[len("data: ") :]) for line in lines])
    assert "limit" in error.message and not error.allow_retry
    assert await thread_ids(chatkit) == before
    assert "Traceback" not in site.log.read_text()[log_size:]


async def test_a_create_refused_by_the_rate_limit_saves_no_thread(stub_server, stub, tmp_path):
    """What the engine refuses when it begins (rate, replies in flight, budget) leaves no
    thread either: the thread is written with its first message, in one transaction."""
    stub.script("hello", tokens=["Hi"])
    with stub_site(
        stub_server.url, tmp_path, {"carol": "carol-pw"}, REPLIES_PER_MINUTE="1"
    ) as other:
        carol = ck.ChatKitClient(other.url, login(other.url, "carol", "carol-pw"))
        try:
            events = await carol.stream(ck.create("hello"))
            first = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
            for _ in range(3):
                error = only_error(await carol.stream(ck.create("hello")))
                assert "a minute" in error.message and error.allow_retry
            assert await thread_ids(carol) == {first}
        finally:
            await carol.close()


async def test_a_client_secret_authorizes_chatkit_and_a_provider_failure_is_saved(
    site, stub, alice
):
    secret = alice.post("/api/chatkit/session").json()["client_secret"]
    chatkit = ck.ChatKitClient(site.url, Authorization=f"Bearer {secret}")
    stub.script("fails", tokens=["Partial", " text"], error_after=2)
    try:
        events = await chatkit.stream(ck.create("fails"))
    finally:
        await chatkit.close()
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    added = next(e for e in events if isinstance(e, ThreadItemAddedEvent))
    done = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)][-1]
    assert done.id == added.item.id
    assert events[-1].type == "error" and events[-1].allow_retry
    reply = saved(alice, thread_id)[-1]
    assert reply["status"] == "error"
    assert reply["content"] == done.content[0].text == "Partial text"
    assert not any(isinstance(e, NoticeEvent) for e in events)


async def test_a_stream_waiting_on_the_model_sends_heartbeats_and_goes_on(site, stub, alice):
    """A proxy cuts a request idle for long (nginx: 60 s), and a cut ChatKit request stops its
    reply: while the model is silent, the stream says so in SSE comments ChatKit ignores."""
    stub.script("slow thinker", tokens=["Let", " me", " think", "."], first_token_delay_ms=2000)
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    lines = []
    request = ck.add_message(thread_id, "slow thinker").model_dump_json()
    with alice.stream("POST", "/api/chatkit", content=request) as answer:
        lines = list(answer.iter_lines())
    assert ": heartbeat" in lines
    texts = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    done = [e for e in texts if e["type"] == "thread.item.done"][-1]
    assert done["item"]["content"][0]["text"] == "Let me think."
    assert saved(alice, thread_id)[-1]["status"] == "complete"


async def test_tool_steps_show_as_progress_and_the_users_time_zone_reaches_the_tool(
    site, stub, alice, chatkit
):
    stub.script(
        "what time",
        tool_calls=[[{"name": "current_time", "arguments": {}}]],
        tokens=["It is", " late."],
    )
    request = ck.create("what time is it?")
    request.metadata = {"time_zone": "Asia/Tokyo"}
    events = await chatkit.stream(request)
    progress = [e.text for e in events if e.type == "progress_update"]
    assert progress == ["Using current_time…"]
    assert "".join(ck.deltas(events)) == "It is late."
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    step = saved(alice, thread_id)[-1]["steps"][0]
    assert step["name"] == "current_time" and step["status"] == "done"
    assert "(Asia/Tokyo, UTC+0900)" in step["output"]


async def test_chatkit_thumbs_are_the_same_feedback_as_the_page_and_the_api(
    site, stub, alice, chatkit
):
    stub.script("rate me", tokens=["Rated", " reply"])
    events = await chatkit.stream(ck.create("rate me"))
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    question, reply = saved(alice, thread_id)
    # The page (or the API) gave it tags and a comment first; ChatKit's thumb changes the
    # rating and keeps them.
    given = {"rating": "up", "tags": ["Helpful"], "comment": "clear"}
    assert alice.put(f"/api/messages/{reply['id']}/feedback/", json=given).status_code == 200
    ws = await socket(site, alice, thread_id)
    items = [reply["id"], question["id"], thread_id]  # a user message, not a message at all
    feedback = ItemsFeedbackReq(
        params={"thread_id": thread_id, "item_ids": items, "kind": "negative"}
    )
    assert await chatkit.call(feedback) == {}
    heard = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert heard["type"] == "feedback" and heard["feedback"]["rating"] == "down"
    await ws.close()
    question, reply = saved(alice, thread_id)
    assert "feedback" not in question, "a user message is not rated"
    assert (reply["feedback"]["rating"], reply["feedback"]["tags"]) == ("down", ["Helpful"])
    assert reply["feedback"]["comment"] == "clear"


async def test_the_composers_model_choice_is_the_threads_model(site, stub, alice, chatkit):
    stub.script("which model", tokens=["Either", " one"])
    request = ck.create("which model")
    request.params.input.inference_options.model = "stub-model"
    events = await chatkit.stream(request)
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    assert saved(alice, thread_id)[-1]["model"] == "stub-model"
    refused = ck.add_message(thread_id, "which model")
    refused.params.input.inference_options.model = "not-offered"
    events = await chatkit.stream(refused)
    assert [type(e) for e in events] == [ErrorEvent]
    assert "not-offered" in events[0].message
    assert len(saved(alice, thread_id)) == 2, "nothing saved"


async def test_a_reply_in_flight_from_the_page_loads_live_and_keeps_chatkit_waiting(
    site, stub, alice, chatkit
):
    stub.script("page reply", tokens=[f" p{i}" for i in range(300)], delay_ms=15)
    thread_id = alice.post("/api/threads/", json={}).json()["id"]
    ws = await socket(site, alice, thread_id)
    await ws.send(
        json.dumps({"command": "start", "message": "page reply", "client_id": str(uuid.uuid4())})
    )
    shown = ""
    while len(shown) < 30:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        shown += frame.get("token", "") if frame["type"] == "token" else ""

    # Loaded mid-reply, the reply shows the text streamed so far, not the last checkpoint.
    items = (await chatkit.call(ck.list_items(thread_id, order="asc")))["data"]
    assert [i["type"] for i in items] == ["user_message", "assistant_message"]
    assert items[1]["content"][0]["text"].startswith(shown)
    # One reply at a time per thread: ChatKit is told why, and its message is not echoed.
    events = await chatkit.stream(ck.add_message(thread_id, "me too"))
    assert "already" in only_error(events).message  # refused before it was echoed
    await ws.send(json.dumps({"command": "stop"}))
    await reply_frames(ws)
    await ws.close()
    assert [m["content"] for m in saved(alice, thread_id)][0] == "page reply"
    assert len(saved(alice, thread_id)) == 2


async def test_a_title_with_a_nul_character_is_refused_and_the_old_one_kept(
    site, stub, alice, chatkit
):
    thread_id = alice.post("/api/threads/", json={"title": "kept"}).json()["id"]
    answer = await chatkit.post(
        ThreadsUpdateReq(params={"thread_id": thread_id, "title": "bad\x00title"})
    )
    assert answer.status_code == 400 and "NUL" in answer.json()["message"]
    assert alice.get(f"/api/threads/{thread_id}/").json()["title"] == "kept"


# --- attachments ---------------------------------------------------------------------------


def announce(name: str, size: int, mime_type: str) -> AttachmentsCreateReq:
    return AttachmentsCreateReq(params={"name": name, "size": size, "mime_type": mime_type})


def upload_to(http, created: dict, name: str, content: bytes):
    """What ChatKit does with an attachment's upload descriptor: post the file there."""
    descriptor = created["upload_descriptor"]
    return http.request(
        descriptor["method"],
        descriptor["url"],
        files={"file": (name, content)},
        headers=descriptor.get("headers") or {},
    )


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (20, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def stored_files(site) -> list[Path]:
    return [p for p in (Path(site.env["CHAT_VAR_DIR"]) / "attachments").rglob("*") if p.is_file()]


async def test_files_attached_in_chatkit_reach_the_model_and_are_the_same_rows_everywhere(
    site, stub, alice, chatkit
):
    note = b"The spare key is under the blue pot."
    text = await chatkit.call(announce("notes.txt", len(note), "text/plain"))
    image = await chatkit.call(announce("dot.png", len(png()), "image/png"))
    assert (text["type"], image["type"]) == ("file", "image")
    assert text["upload_descriptor"]["url"].endswith(
        f"/api/chatkit/attachments/{text['id']}/upload"
    )
    for created, name, content in ((text, "notes.txt", note), (image, "dot.png", png())):
        uploaded = upload_to(alice, created, name, content)
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["id"] == created["id"]

    # A third, removed before sending (the composer's chip closed): gone with its file.
    dropped = await chatkit.call(announce("draft.txt", 5, "text/plain"))
    assert upload_to(alice, dropped, "draft.txt", b"draft").status_code == 200
    params = AttachmentDeleteParams(attachment_id=dropped["id"])
    assert await chatkit.call(AttachmentsDeleteReq(params=params)) == {}
    assert len(stored_files(site)) == 2

    stub.script("what do my files say", tokens=["Under", " the pot."])
    request = ck.create("what do my files say?")
    request.params.input.attachments = [text["id"], image["id"]]
    events = await chatkit.stream(request)
    thread_id = next(e for e in events if isinstance(e, ThreadCreatedEvent)).thread.id
    echoed = next(e.item for e in events if isinstance(e, ThreadItemDoneEvent))
    assert [a.id for a in echoed.attachments] == [text["id"], image["id"]]
    assert "".join(ck.deltas(events)) == "Under the pot."

    asked = [
        json.dumps(r["body"]["messages"][-1])
        for r in stub.requests
        if r["path"].endswith("/chat/completions") and "Write a short title" not in json.dumps(r)
    ]
    question = asked[-1]  # the reply's request (not the title's)
    assert note.decode() in question and "data:image/png;base64," in question

    # The REST API's message object, and ChatKit's items loaded back, list the same files.
    message = saved(alice, thread_id)[0]
    assert [(a["id"], a["name"]) for a in message["attachments"]] == [
        (text["id"], "notes.txt"),
        (image["id"], "dot.png"),
    ]
    user_item = (await chatkit.call(ck.list_items(thread_id, order="asc")))["data"][0]
    shown = {a["id"]: a for a in user_item["attachments"]}
    assert shown[text["id"]]["type"] == "file"
    preview = shown[image["id"]]["preview_url"]
    assert preview.endswith(f"/api/attachments/{image['id']}/content")
    got = alice.get(preview)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"


async def test_another_users_attachment_a_refused_file_and_an_oversize_upload_store_nothing(
    site, stub, alice, chatkit
):
    mine = await chatkit.call(announce("mine.txt", 4, "text/plain"))
    assert upload_to(alice, mine, "mine.txt", b"mine").status_code == 200
    files = stored_files(site)
    bob_http = login(site.url, "bob", "bob-pw")
    bob = ck.ChatKitClient(site.url, bob_http)
    try:
        assert upload_to(bob_http, mine, "mine.txt", b"bob's").status_code == 404
        taking = ck.create("read alice's file")
        taking.params.input.attachments = [mine["id"]]
        assert "not yours" in only_error(await bob.stream(taking)).message
        params = AttachmentDeleteParams(attachment_id=mine["id"])
        assert (await bob.post(AttachmentsDeleteReq(params=params))).status_code == 404
    finally:
        await bob.close()

    # Too large: refused when announced, and when the bytes come anyway (before they are read).
    too_big = await chatkit.post(announce("big.txt", UPLOAD_LIMIT + 1, "text/plain"))
    assert too_big.status_code == 413 and too_big.json()["code"] == "too_large"
    liar = await chatkit.call(announce("small.txt", 10, "text/plain"))
    refused = upload_to(alice, liar, "small.txt", b"x" * (3 * UPLOAD_LIMIT))
    assert refused.status_code == 413 and refused.json()["code"] == "too_large"
    # Not what it says it is: the same check as the page's uploads, said clearly.
    program = upload_to(alice, liar, "small.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 200)
    assert program.status_code == 415 and "attach text, PDF" in program.json()["message"]
    assert stored_files(site) == files
    # Neither is sendable: its bytes never came.
    waiting = ck.create("send the refused one")
    waiting.params.input.attachments = [liar["id"]]
    assert "upload has not finished" in only_error(await chatkit.stream(waiting)).message
