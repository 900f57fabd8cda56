"""docs/protocol.md against the running code: every command it lists is sent, every frame type
it lists is received, and every frame is validated against the definitions the doc's tables
are generated from (chat.frames through chat.frame_schema), field by field."""

import functools
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from jsonschema import Draft202012Validator

from chat import frame_schema, frames, services
from chat.models import Message, Thread
from scripts import protocol_doc
from tests.helpers import client_secret, connect, receive

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(frame_schema.schema(name))


def problems(value: Any, name: str) -> list[str]:
    """What in `value` breaks the definition `name`: a missing or unknown field, a wrong type,
    a value its Literal does not allow."""
    return [
        f"{name}.{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in _validator(name).iter_errors(value)
    ]


def check_frame(frame: dict[str, Any]) -> None:
    """The frame is one the doc lists, with exactly the fields and types it defines."""
    name = frame_schema.frame_types().get(frame.get("type"))
    assert name is not None, f"a frame type docs/protocol.md does not list: {frame}"
    assert not problems(frame, name), (problems(frame, name), frame)
    if frame["type"] == "error":
        assert ("message_id" in frame) == ("seq" in frame), frame
        expected = frames.ERRORS[frame["code"]].recoverable
        assert expected is None or frame["recoverable"] is expected, frame


def check_command(command: dict[str, Any]) -> None:
    """The command is one the doc lists, with exactly the fields and types it defines."""
    name = frame_schema.command_names().get(command.get("command"))
    assert name is not None, f"a command docs/protocol.md does not list: {command}"
    assert not problems(command, name), (problems(command, name), command)


class Wire:
    """One socket, every command sent and frame received checked and noted."""

    def __init__(self, communicator: Any) -> None:
        self.communicator = communicator
        self.sent: set[str] = set()
        self.seen: set[str] = set()

    async def send(self, command: dict[str, Any]) -> None:
        check_command(command)
        self.sent.add(command["command"])
        await self.communicator.send_to(text_data=json.dumps(command))

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def until(self, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Frames up to and including the first one `wanted`."""
        received = []
        while True:
            frame = await receive(self.communicator)
            check_frame(frame)
            self.seen.add(frame["type"])
            received.append(frame)
            if wanted(frame):
                return received


def of_type(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame["type"] == kind and all(frame[k] == v for k, v in fields.items())


def start(text: str) -> dict[str, Any]:
    return {"command": "start", "message": text, "client_id": str(uuid.uuid4())}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_every_command_in_the_doc_gets_every_frame_type_in_the_doc_as_defined(
    stub, memory_layer, alice, settings
):
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice)
    wire = Wire(await connect(thread.id, alice))
    ready = (await wire.until(of_type("ready")))[-1]
    assert ready["active"] is None

    # A reply that completes, in an untitled thread: the thread gets a title, then the model's.
    # It calls a tool on the way (`tool` frames) for a user in Tokyo.
    stub.script(
        "about the protocol",
        tool_calls=[[{"name": "current_time", "arguments": {"time_zone": None}}]],
        tokens=["Echo: ", "it ", "is ", "late."],
    )
    first = {**start("Tell me about the protocol"), "time_zone": "Asia/Tokyo"}
    await wire.send(first)
    reply = await wire.until(frames.is_terminal)
    steps = [f for f in reply if f["type"] == "tool"]
    assert [s["status"] for s in steps] == ["running", "done"]
    assert "(Asia/Tokyo, UTC+0900)" in steps[-1]["output"]
    assert [f["type"] for f in reply][:2] == ["message", "start"]
    assert reply[-1]["type"] == "complete" and reply[-1]["status"] == "complete"
    assert [f["seq"] for f in reply[1:]] == list(range(len(reply) - 1))
    await wire.until(of_type("thread"))
    await wire.until(lambda f: f["type"] == "thread" and f["thread"]["title"].startswith("Echo"))
    await wire.send(first)  # the same client_id again starts nothing
    await wire.until(of_type("ready", active=None))

    await wire.send({"command": "heartbeat"})
    await wire.until(of_type("heartbeat", active=None))
    await wire.send({"command": "stop"})  # nothing running
    await wire.until(of_type("ready"))

    # A reply that is stopped, seen meanwhile by heartbeat and resync.
    stub.script("slow-protocol", tokens=[f" w{i}" for i in range(300)], delay_ms=10)
    await wire.send(start("slow-protocol"))
    asked = (await wire.until(of_type("message")))[-1]["message"]
    reply_id = (await wire.until(of_type("token")))[-1]["message_id"]
    await wire.send({"command": "heartbeat"})
    beat = (await wire.until(of_type("heartbeat")))[-1]
    assert beat["active"]["message_id"] == reply_id
    await wire.send({"command": "resync"})
    snapshot = (await wire.until(of_type("ready")))[-1]["active"]
    assert snapshot["message_id"] == reply_id and snapshot["seq"] >= beat["active"]["seq"]
    await wire.send({"command": "stop"})
    ended = (await wire.until(frames.is_terminal))[-1]
    assert ended["type"] == "complete" and ended["status"] == "cancelled"

    # A regenerated reply that fails at the provider.
    stub.script("slow-protocol", tokens=["one", " two", " three"], error_after=1)
    await wire.send({"command": "regenerate", "client_id": str(uuid.uuid4())})
    redone = await wire.until(frames.is_terminal)
    placed = redone[0]["message"]  # the new reply, a sibling of the stopped one
    assert redone[0]["type"] == "message" and placed["status"] == "streaming"
    assert placed["parent_id"] == asked["id"] and placed["siblings"]["ids"][0] == reply_id
    assert redone[-1]["type"] == "error" and redone[-1]["code"] == "provider_error"

    # An edit of the message: a new version beside it, answered (the old one is kept).
    await wire.send(
        {
            "command": "edit",
            "message_id": asked["id"],
            "message": "edited",
            "client_id": str(uuid.uuid4()),
        }
    )
    edited = await wire.until(frames.is_terminal)
    assert edited[0]["type"] == "message" and edited[0]["message"]["content"] == "edited"
    assert edited[0]["message"]["siblings"]["ids"] == [asked["id"], edited[0]["message"]["id"]]
    assert edited[-1]["type"] == "complete"

    # The reply is rated (in another tab, or by the API): this tab hears of it.
    rated = await database_sync_to_async(Message.objects.get)(pk=edited[-1]["message_id"])
    await database_sync_to_async(services.feedback_set)(
        message=rated, user=alice, given={"rating": "up", "tags": ["Helpful"]}
    )
    heard = (await wire.until(of_type("feedback")))[-1]
    assert heard["message_id"] == str(rated.id) and heard["feedback"]["rating"] == "up"

    # Another thread of the user's is deleted (in another tab): this tab's list hears of it.
    other = await database_sync_to_async(Thread.objects.create)(owner=alice)
    other_id = str(other.id)
    await database_sync_to_async(services.thread_delete)(thread=other)
    gone = (await wire.until(of_type("thread_deleted")))[-1]
    assert gone["thread_id"] == other_id

    # A reply cut by the token limit (`truncated`), continued: its frames carry on its seq.
    settings.REPLY_MAX_TOKENS = 3
    stub.script("cut-protocol", tokens=[f" c{i}" for i in range(8)])
    stub.script("Continue exactly", tokens=[" and", " done."])
    await wire.send(start("cut-protocol"))
    cut = (await wire.until(frames.is_terminal))[-1]
    assert cut["type"] == "complete" and cut["truncated"] is True
    await wire.send({"command": "continue", "message_id": cut["message_id"]})
    more = await wire.until(frames.is_terminal)
    assert more[0]["type"] == "token" and more[0]["seq"] == cut["seq"] + 1
    assert more[-1]["message_id"] == cut["message_id"] and "truncated" not in more[-1]

    # A command the doc does not list is answered, and the socket stays open.
    await wire.send_raw(json.dumps({"command": "fly"}))
    refused = (await wire.until(of_type("error")))[-1]
    assert refused["code"] == "bad_request" and "message_id" not in refused

    assert wire.sent == set(frame_schema.command_names()), "every command the doc lists"
    assert wire.seen == set(frame_schema.frame_types()), "every frame type the doc lists"
    await wire.communicator.disconnect()


def sse_frames(body: str, event_id: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """The frames of an SSE body, each checked, and its event id checked: `event_id(frame)`
    for a reply's frames, none for the others. Comments and `retry:` are skipped."""
    received = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line[:1] == ":")
        if "data" not in fields:
            continue
        frame = json.loads(fields["data"])
        check_frame(frame)
        assert fields.get("id") == (event_id(frame) if "seq" in frame else None), block
        received.append(frame)
    return received


async def _body(response: Any) -> str:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    return "".join([chunk.decode() async for chunk in response.streaming_content])


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_sse_streams_send_the_docs_frames_with_the_docs_event_ids(
    stub, memory_layer, alice, settings
):
    thread = await database_sync_to_async(Thread.objects.create)(owner=alice, title="t")
    secret = await database_sync_to_async(client_secret)(alice)
    bearer = {"Authorization": f"Bearer {secret}"}
    client = AsyncClient()
    by_seq = lambda frame: str(frame["seq"])  # noqa: E731
    for path in ("/api/stream/message", "/api/stream/chatkit"):
        response = await client.post(
            path,
            {"message": f"over {path}", "thread_id": str(thread.id)},
            content_type="application/json",
            headers=bearer,
        )
        assert response["X-Thread-Id"] == str(thread.id)
        received = sse_frames(await _body(response), by_seq)
        assert [f["type"] for f in received][:2] == ["message", "start"]
        assert received[-1]["type"] == "complete"

    # The thread's event stream, resumed after the reply's frame 1 (it ends by SSE_MAX_SECONDS).
    settings.SSE_MAX_SECONDS = 0.5
    reply_id = received[-1]["message_id"]
    by_reply = lambda frame: f"{frame['message_id']}:{frame['seq']}"  # noqa: E731
    resumed = await client.get(
        f"/api/threads/{thread.id}/events/", headers=bearer | {"Last-Event-ID": f"{reply_id}:1"}
    )
    without_ts = lambda frames: [{**f, "ts": 0} for f in frames]  # noqa: E731  (replays stamp anew)
    assert without_ts(sse_frames(await _body(resumed), by_reply)) == without_ts(
        [f for f in received if f.get("seq", 0) > 1]
    )
    fresh = await client.get(f"/api/threads/{thread.id}/events/", headers=bearer)
    assert [f["type"] for f in sse_frames(await _body(fresh), by_reply)] == ["ready"]

    # The API's message objects are the frames' message objects.
    listed = await client.get(f"/api/threads/{thread.id}/messages/", headers=bearer)
    results = listed.json()["results"]
    assert [m["role"] for m in results] == ["user", "assistant"] * 2
    for shown in results:
        assert not problems(shown, "MessageObject"), problems(shown, "MessageObject")
    assert results[2] == received[0]["message"]


def test_every_example_line_in_the_doc_is_a_command_or_frame_as_defined():
    checked = 0
    for line in DOC.read_text().splitlines():
        prefix = re.match(r"(→|←|data:) ", line)
        if prefix is None:
            continue
        value, _ = json.JSONDecoder().raw_decode(line[prefix.end() :])
        (check_command if prefix[1] == "→" else check_frame)(value)
        checked += 1
    assert checked >= 10


def test_the_docs_tables_are_generated_from_the_frames():
    text = DOC.read_text()
    assert protocol_doc.render(text) == text, "stale: run python -m scripts.protocol_doc"
    for part in protocol_doc.BLOCKS:
        assert f"<!-- generated: {part} -->" in text


def test_the_wires_codes_and_statuses_are_defined_once_and_agree_with_the_model():
    assert list(frames.ERRORS) == list(get_args(frames.ErrorCode))
    assert set(get_args(frames.MessageStatus)) == set(Message.Status.values)
    assert set(get_args(frames.Role)) == set(Message.Role.values)
    assert set(get_args(frames.EndStatus)) == set(Message.TERMINAL)
