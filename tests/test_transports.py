"""Every capability on every transport a user can reach it by, on one process and across two.

The table: each capability (`ACTIONS`) is done through each transport that offers it (the
page's WebSocket, SSE, the REST API, ChatKit) on process A, and what a user would notice is
then checked through *every* transport (`CHECKS`), on A itself ("one process") or on B
("two processes", one PostgreSQL and one Redis). A capability that works on one transport
only, or whose result another transport cannot see, fails here: the holes an outside audit
found were all of that kind. A new capability adds its row to both tables.
"""

import asyncio
import io
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest
from chatkit.actions import Action
from chatkit.types import (
    AttachmentsCreateReq,
    ItemsFeedbackReq,
    ThreadCustomActionParams,
    ThreadDeleteParams,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsUpdateReq,
)
from PIL import Image
from websockets.asyncio.client import connect as ws_connect

from chat import frames
from tests import chatkit_client as ck
from tests.servers import Daphne, cookie_header, frames_until, login, manage, shared_sites

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.asyncio]

USER, PASSWORD = "tabitha", "tabitha-pw"
OTHER, OTHER_PASSWORD = "otto", "otto-pw"
TEXT = ["Across ", "every ", "transport."]
# A reply the token limit (REPLY_MAX_TOKENS, below) cuts, and the rest `continue` asks for.
MAX_TOKENS = 400
LONG = [f"w{i} " for i in range(MAX_TOKENS + 20)]
REST = ["and ", "the ", "end."]


MODELS = "stub-model,second-model,kept-model"
KEEP_TO_STAFF = """
from django.contrib.auth.models import Group
from chat.models import ModelAccess
access = ModelAccess.objects.create(model="kept-model")
access.groups.add(Group.objects.create(name="staff-only"))
"""


@pytest.fixture(scope="module")
def processes(stub_server, tmp_path_factory):
    with shared_sites(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {USER: PASSWORD, OTHER: OTHER_PASSWORD},
        REPLIES_PER_MINUTE="0",
        REPLY_MAX_TOKENS=str(MAX_TOKENS),
        SSE_HEARTBEAT_SECONDS="0.5",
        AGENT_MODELS=MODELS,
        AGENT_VISION_MODELS="stub-model",
    ) as servers:
        manage(servers[0].env, "shell", "-c", KEEP_TO_STAFF)  # not the table's user's group
        yield servers


class Tab:
    """One user's client of one process: its REST client, ChatKit client and sockets."""

    def __init__(self, server: Daphne, session: httpx.Client) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.url, cookies=session.cookies, headers=session.headers, timeout=15
        )
        self.chatkit = ck.ChatKitClient(server.url, self.http)

    async def socket(self, thread_id: str):
        return (await self.connect(thread_id))[0]

    async def connect(self, thread_id: str) -> tuple:
        """A socket of the thread, and the `ready` it opened with."""
        ws = await ws_connect(
            f"{self.server.ws_url}/ws/threads/{thread_id}/",
            origin=self.server.url,
            additional_headers={"Cookie": cookie_header(self.http)},
        )
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        return ws, ready

    def new_thread(self, title: str = "", **fields: str) -> str:
        return self.http.post("/api/threads/", json={"title": title, **fields}).json()["id"]

    def saved(self, thread_id: str) -> list[dict]:
        return self.http.get(f"/api/threads/{thread_id}/messages/").json()["results"]

    async def listen(self, thread_id: str) -> "Listener":
        """Another tab's view of a thread: its WebSocket and its SSE event stream."""
        return await Listener.open(self, thread_id)

    async def close(self) -> None:
        await self.chatkit.close()
        self.http.close()


class Listener:
    """A tab showing another thread, by WebSocket and by SSE: each hears the thread list."""

    @classmethod
    async def open(cls, tab: Tab, thread_id: str) -> "Listener":
        listener = cls()
        listener.ws, by_ws = await tab.connect(thread_id)
        listener.http = httpx.AsyncClient(
            base_url=tab.server.url, cookies=tab.http.cookies, timeout=15
        )
        listener.sse = await listener.http.send(
            listener.http.build_request("GET", f"/api/threads/{thread_id}/events/"), stream=True
        )
        listener.lines = listener.sse.aiter_lines()
        by_sse = await listener.next_event()
        assert by_sse["type"] == "ready"
        listener.ready = [by_ws, by_sse]  # what each said first: a reply in flight, if any
        return listener

    async def next_event(self) -> dict:
        async for line in self.lines:
            if line.startswith("data:"):
                return json.loads(line[5:])
        raise AssertionError("the event stream ended")

    async def heard(self, done: Callable[[dict], bool]) -> list[dict]:
        """The frame `done` waits for, as the WebSocket and the event stream each got it."""
        by_ws = (await frames_until(self.ws, done))[-1]
        while not done(by_sse := await asyncio.wait_for(self.next_event(), 15)):
            pass
        return [by_ws, by_sse]

    async def close(self) -> None:
        await self.ws.close()
        await self.sse.aclose()
        await self.http.aclose()


# --- doing each capability on each transport ---------------------------------------------


async def reply_by_websocket(tab: Tab, thread: str) -> None:
    ws = await tab.socket(thread)
    await ws.send(json.dumps({"command": "start", "message": "table reply"}))
    await frames_until(ws, frames.is_terminal)
    await ws.close()


async def reply_by_sse(tab: Tab, thread: str) -> None:
    body = {"message": "table reply", "thread_id": thread}
    with tab.http.stream("POST", "/api/stream/message", json=body) as answer:
        assert answer.status_code == 200
        ended = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data:")]
    assert frames.is_terminal(ended[-1])


async def reply_by_chatkit(tab: Tab, thread: str, model: str | None = None) -> None:
    request = ck.add_message(thread, "table reply")
    request.params.input.inference_options.model = model
    events = await tab.chatkit.stream(request)
    assert "".join(ck.deltas(events)) == "".join(TEXT)


async def model_by_websocket(tab: Tab, thread: str, model: str = "second-model") -> list[dict]:
    ws = await tab.socket(thread)
    await ws.send(json.dumps({"command": "start", "message": "table reply", "model": model}))
    received = await frames_until(ws, lambda f: frames.is_terminal(f) or f["type"] == "error")
    await ws.close()
    return received


async def model_by_sse(tab: Tab, thread: str, model: str = "second-model") -> list[dict]:
    body = {"message": "table reply", "thread_id": thread, "model": model}
    with tab.http.stream("POST", "/api/stream/message", json=body) as answer:
        if answer.status_code != 200:
            return [json.loads(answer.read())]
        return [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data:")]


async def model_by_chatkit(tab: Tab, thread: str, model: str = "second-model") -> list:
    request = ck.add_message(thread, "table reply")
    request.params.input.inference_options.model = model
    return await tab.chatkit.stream(request)


async def model_by_rest(tab: Tab, thread: str, model: str = "second-model") -> int:
    return tab.http.patch(f"/api/threads/{thread}/", json={"model": model}).status_code


async def feedback_by_rest(tab: Tab, thread: str) -> None:
    reply = tab.saved(thread)[-1]
    given = {"rating": "down", "tags": ["Too long"], "comment": "by the API"}
    assert tab.http.put(f"/api/messages/{reply['id']}/feedback/", json=given).is_success


async def feedback_by_chatkit(tab: Tab, thread: str) -> None:
    reply = tab.saved(thread)[-1]
    params = {"thread_id": thread, "item_ids": [reply["id"]], "kind": "negative"}
    assert await tab.chatkit.call(ItemsFeedbackReq(params=params)) == {}


async def stop_by_websocket(tab: Tab, thread: str) -> None:
    ws = await tab.socket(thread)
    await ws.send(json.dumps({"command": "start", "message": "table stop"}))
    await frames_until(ws, lambda f: f["type"] == "token")
    await ws.send(json.dumps({"command": "stop"}))
    await frames_until(ws, frames.is_terminal)
    await ws.close()


async def stop_by_chatkit(tab: Tab, thread: str) -> None:
    async for event in tab.chatkit.events(ck.add_message(thread, "table stop")):
        if ck.deltas([event]):
            break  # ChatKit's Stop drops the request


async def rename_by_rest(tab: Tab, thread: str) -> None:
    assert tab.http.patch(f"/api/threads/{thread}/", json={"title": "Renamed"}).is_success


async def rename_by_chatkit(tab: Tab, thread: str) -> None:
    await tab.chatkit.call(ThreadsUpdateReq(params={"thread_id": thread, "title": "Renamed"}))


async def delete_by_rest(tab: Tab, thread: str) -> None:
    assert tab.http.delete(f"/api/threads/{thread}/").status_code == 204


async def delete_by_chatkit(tab: Tab, thread: str) -> None:
    await tab.chatkit.call(ThreadsDeleteReq(params=ThreadDeleteParams(thread_id=thread)))


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


# A thread's uploads, made by the `attach` action on A and sent by its check (on A or B): one
# set for a `start` on the WebSocket, one for the streaming POST (a file is sent once).
UPLOADS: dict[str, list[list[str]]] = {}
SENDERS = ("websocket", "sse")


def attachment_files(via: str) -> list[tuple[str, bytes]]:
    return [(f"{via}.txt", f"The note sent by {via}.".encode()), (f"{via}.png", png())]


async def attach_by_rest(tab: Tab, thread: str) -> None:
    UPLOADS[thread] = [
        [
            tab.http.post("/api/attachments/", files={"file": file}).json()["id"]
            for file in attachment_files(via)
        ]
        for via in SENDERS
    ]


async def attach_by_chatkit(tab: Tab, thread: str) -> None:
    UPLOADS[thread] = []
    for via in SENDERS:
        ids = []
        for name, content in attachment_files(via):
            params = {"name": name, "size": len(content), "mime_type": "application/octet-stream"}
            created = await tab.chatkit.call(AttachmentsCreateReq(params=params))
            descriptor = created["upload_descriptor"]
            sent = tab.http.post(descriptor["url"], files={"file": (name, content)})
            assert sent.status_code == 200, sent.text
            ids.append(created["id"])
        UPLOADS[thread].append(ids)


async def truncated_by_websocket(tab: Tab, thread: str) -> str:
    """A reply the token limit cuts; its id."""
    ws = await tab.socket(thread)
    await ws.send(json.dumps({"command": "start", "message": "table long"}))
    ended = (await frames_until(ws, frames.is_terminal))[-1]
    await ws.close()
    assert ended.get("truncated") is True, ended
    return ended["message_id"]


def last_reply_id(tab: Tab, thread: str) -> str:
    return tab.saved(thread)[-1]["id"]


async def continue_by_websocket(tab: Tab, thread: str, reply: str | None = None) -> list[dict]:
    ws = await tab.socket(thread)
    command = {"command": "continue", "message_id": reply or last_reply_id(tab, thread)}
    await ws.send(json.dumps(command))
    received = await frames_until(ws, lambda f: frames.is_terminal(f) or f["type"] == "error")
    await ws.close()
    return received


async def continue_by_sse(tab: Tab, thread: str, reply: str | None = None) -> list[dict]:
    body = {
        "command": "continue",
        "message_id": reply or last_reply_id(tab, thread),
        "thread_id": thread,
    }
    with tab.http.stream("POST", "/api/stream/message", json=body) as answer:
        if answer.status_code != 200:
            return [json.loads(answer.read())]
        return [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data:")]


async def continue_by_chatkit(tab: Tab, thread: str, reply: str | None = None) -> list:
    params = ThreadCustomActionParams(
        thread_id=thread,
        item_id=reply or last_reply_id(tab, thread),
        action=Action(type="continue"),
    )
    return await tab.chatkit.stream(ThreadsCustomActionReq(params=params))


# --- branches: a thread of three exchanges, on which an edit names the second question (an
# earlier message, not the last), a regenerate answers the third again, and a switch goes
# back to the second question's first version (the setup edits it) ------------------------
QUESTIONS = ["branch one", "branch two", "branch three"]
EDITED = "branch two, edited"
AFTER = "branch after the switch"


def echo(text: str) -> str:
    """The stub's answer to a message it has no script for."""
    return "Echo: " + text


async def command_by_websocket(tab: Tab, thread: str, command: dict) -> list[dict]:
    """One command on a new socket of the thread: the frames up to its reply's end, or its
    refusal."""
    ws = await tab.socket(thread)
    await ws.send(json.dumps(command))
    received = await frames_until(ws, lambda f: frames.is_terminal(f) or f["type"] == "error")
    await ws.close()
    return received


def command_by_sse(tab: Tab, thread: str, command: dict) -> list[dict]:
    """One command as the streaming POST's body: its frames, or its refusal (as JSON)."""
    body = {**command, "thread_id": thread}
    with tab.http.stream("POST", "/api/stream/message", json=body) as answer:
        if answer.status_code != 200:
            return [{**json.loads(answer.read()), "status": answer.status_code}]
        return [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data:")]


async def conversation(tab: Tab, thread: str, questions: list[str] = QUESTIONS) -> None:
    ws = await tab.socket(thread)
    for question in questions:
        await ws.send(json.dumps({"command": "start", "message": question}))
        assert (await frames_until(ws, frames.is_terminal))[-1]["type"] == "complete"
    await ws.close()


def edit_command(tab: Tab, thread: str) -> dict:
    second = tab.saved(thread)[2]
    assert second["content"] == QUESTIONS[1]
    return {"command": "edit", "message_id": second["id"], "message": EDITED}


def completed(received: list[dict]) -> None:
    assert received[-1]["type"] == "complete", received[-1]


async def edit_by_websocket(tab: Tab, thread: str) -> None:
    completed(await command_by_websocket(tab, thread, edit_command(tab, thread)))


async def edit_by_sse(tab: Tab, thread: str) -> None:
    received = command_by_sse(tab, thread, edit_command(tab, thread))
    assert received[0]["type"] == "message" and received[0]["message"]["content"] == EDITED
    completed(received)


async def regenerate_by_websocket(tab: Tab, thread: str) -> None:
    completed(await command_by_websocket(tab, thread, {"command": "regenerate"}))


async def regenerate_by_sse(tab: Tab, thread: str) -> None:
    received = command_by_sse(tab, thread, {"command": "regenerate"})
    assert received[0]["type"] == "message" and received[0]["message"]["role"] == "assistant"
    completed(received)


async def regenerate_by_chatkit(tab: Tab, thread: str) -> None:
    """ChatKit's retry of the last question: a new branch, as a regenerate."""
    events = await tab.chatkit.stream(ck.retry(thread, tab.saved(thread)[-2]["id"]))
    assert "".join(ck.deltas(events)) == echo(QUESTIONS[2])


async def switch_by_rest(tab: Tab, thread: str) -> None:
    """Back to the second question's first version (the setup edited it)."""
    edited = tab.saved(thread)[2]
    assert edited["content"] == EDITED
    first_version = edited["siblings"]["ids"][0]
    answer = tab.http.patch(f"/api/threads/{thread}/", json={"active_leaf": first_version})
    assert answer.status_code == 200, answer.text


ACTIONS: dict[str, dict[str, Callable[[Tab, str], Awaitable[None]]]] = {
    "reply": {"websocket": reply_by_websocket, "sse": reply_by_sse, "chatkit": reply_by_chatkit},
    "stop": {"websocket": stop_by_websocket, "chatkit": stop_by_chatkit},
    "rename": {"rest": rename_by_rest, "chatkit": rename_by_chatkit},
    "delete": {"rest": delete_by_rest, "chatkit": delete_by_chatkit},
    "model": {
        "websocket": model_by_websocket,
        "sse": model_by_sse,
        "chatkit": model_by_chatkit,
        "rest": model_by_rest,
    },
    "feedback": {"rest": feedback_by_rest, "chatkit": feedback_by_chatkit},
    "attach": {"rest": attach_by_rest, "chatkit": attach_by_chatkit},
    "continue": {
        "websocket": continue_by_websocket,
        "sse": continue_by_sse,
        "chatkit": continue_by_chatkit,
    },
    "edit": {"websocket": edit_by_websocket, "sse": edit_by_sse},
    "regenerate": {
        "websocket": regenerate_by_websocket,
        "sse": regenerate_by_sse,
        "chatkit": regenerate_by_chatkit,
    },
    "switch": {"rest": switch_by_rest},
}
# Capabilities whose other tab (`other`, on the viewer's process) shows the thread itself.
ON_THE_THREAD = ("edit", "regenerate", "switch")


# --- what each transport shows afterwards ---------------------------------------------------


async def last_reply(tab: Tab, thread: str, status: str) -> dict:
    for _ in range(100):  # a stopped reply is saved just after its request is dropped
        reply = tab.saved(thread)[-1]
        if reply["status"] == status:
            return reply
        await asyncio.sleep(0.1)
    raise AssertionError(f"the reply is {reply['status']}, not {status}")


async def replied(tab: Tab, thread: str, other: "Listener") -> None:
    reply = await last_reply(tab, thread, "complete")
    assert reply["content"] == "".join(TEXT)  # the REST API
    items = (await tab.chatkit.call(ck.list_items(thread, order="desc", limit=1)))["data"]
    assert items[0]["id"] == reply["id"] and items[0]["content"][0]["text"] == reply["content"]


async def stopped(tab: Tab, thread: str, other: "Listener") -> None:
    reply = await last_reply(tab, thread, "cancelled")
    assert reply["content"] and len(reply["content"]) < len("".join(SLOW))
    items = (await tab.chatkit.call(ck.list_items(thread, order="desc", limit=1)))["data"]
    assert items[0]["content"][0]["text"] == reply["content"]


async def renamed(tab: Tab, thread: str, other: "Listener") -> None:
    assert tab.http.get(f"/api/threads/{thread}/").json()["title"] == "Renamed"
    seen = await tab.chatkit.call(ck.get_thread(thread))
    assert seen["title"] == "Renamed"
    for frame in await other.heard(lambda f: f["type"] == "thread"):  # another tab's list
        assert frame["thread"] == {**frame["thread"], "id": thread, "title": "Renamed"}


async def deleted(tab: Tab, thread: str, other: "Listener") -> None:
    assert tab.http.get(f"/api/threads/{thread}/").status_code == 404
    assert (await tab.chatkit.post(ck.get_thread(thread))).status_code == 404
    for frame in await other.heard(lambda f: f["type"] == "thread_deleted"):
        assert frame["thread_id"] == thread


def chat_requests(stub) -> list[dict]:
    return [r for r in stub.requests if r["path"].endswith("/chat/completions")]


async def modelled(tab: Tab, thread: str, other: "Listener") -> None:
    assert tab.http.get(f"/api/threads/{thread}/").json()["model"] == "second-model"
    for frame in await other.heard(lambda f: f["type"] == "thread" and f["thread"]["id"] == thread):
        assert frame["thread"]["model"] == "second-model"  # another tab's picker follows
    # The next reply, asked on the viewer's process without naming a model, uses it.
    await reply_by_websocket(tab, thread)
    assert chat_requests(tab.stub)[-1]["body"]["model"] == "second-model"
    assert tab.saved(thread)[-1]["model"] == "second-model"


async def rated(tab: Tab, thread: str, other: "Listener") -> None:
    reply = tab.saved(thread)[-1]
    assert reply["feedback"]["rating"] == "down"
    # The same rating, whichever transport changes it next: one per reply.
    changed = tab.http.put(f"/api/messages/{reply['id']}/feedback/", json={"rating": "up"})
    assert changed.is_success and tab.saved(thread)[-1]["feedback"]["rating"] == "up"


async def sent_with_files(tab: Tab, thread: str, other: "Listener") -> None:
    """The uploads, sent on this process by a `start` and by the streaming POST, reach the
    model (the text, and the image as a data URL: its file read from the shared storage); the
    REST API and ChatKit list them; the file is served here."""
    for via, ids in zip(SENDERS, UPLOADS.pop(thread), strict=True):
        start = {"message": f"table reply by {via}", "attachments": ids}
        if via == "websocket":
            ws = await tab.socket(thread)
            await ws.send(json.dumps({"command": "start", **start}))
            ended = await frames_until(ws, lambda f: frames.is_terminal(f) or f["type"] == "error")
            await ws.close()
            assert ended[-1]["type"] == "complete", ended[-1]
        else:
            with tab.http.stream(
                "POST", "/api/stream/message", json={**start, "thread_id": thread}
            ) as answer:
                assert answer.status_code == 200, answer.read()
                lines = [line for line in answer.iter_lines() if line.startswith("data:")]
            assert json.loads(lines[-1][5:])["type"] == "complete"
        asked = json.dumps(chat_requests(tab.stub)[-1]["body"]["messages"][-1])
        assert f"The note sent by {via}." in asked and "data:image/png;base64," in asked
    questions = [m for m in tab.saved(thread) if m["role"] == "user"]
    assert [[a["name"] for a in m["attachments"]] for m in questions] == [
        [f"{via}.txt", f"{via}.png"] for via in SENDERS
    ]
    note = questions[0]["attachments"][0]
    assert tab.http.get(note["url"]).content == b"The note sent by websocket."
    items = (await tab.chatkit.call(ck.list_items(thread, order="asc")))["data"]
    shown = [[a["type"] for a in i["attachments"]] for i in items if i["type"] == "user_message"]
    assert shown == [["file", "image"], ["file", "image"]]


async def continued(tab: Tab, thread: str, other: "Listener") -> None:
    """One reply, its text the cut part and the rest, no longer truncated, in every view."""
    whole = "".join(LONG[:MAX_TOKENS] + REST)
    question, reply = tab.saved(thread)
    assert (reply["content"], reply["truncated"]) == (whole, False)
    assert reply["metrics"]["totalTokens"] == MAX_TOKENS + len(REST)
    items = (await tab.chatkit.call(ck.list_items(thread, order="desc", limit=1)))["data"]
    assert items[0]["id"] == reply["id"] and items[0]["content"][0]["text"] == whole


def sent_to_model(stub) -> list[str]:
    """The texts of the last request the provider got, the system prompt left out."""
    messages = chat_requests(stub)[-1]["body"]["messages"]
    return [m["content"] for m in messages if m["role"] != "system"]


async def items_of(tab: Tab, thread: str) -> list[str]:
    """The ids of ChatKit's items of the thread, oldest first."""
    return [i["id"] for i in (await tab.chatkit.call(ck.list_items(thread, order="asc")))["data"]]


async def edited(tab: Tab, thread: str, other: "Listener") -> None:
    """The second question's new version and its answer, in every view; its first version
    kept (the `siblings` count both); the model was given the new path only."""
    path = tab.saved(thread)
    one, two = QUESTIONS[:2]
    assert [m["content"] for m in path] == [one, echo(one), EDITED, echo(EDITED)]
    assert sent_to_model(tab.stub) == [one, echo(one), EDITED], "nothing of the old branch"
    version = path[2]
    assert (version["siblings"]["count"], version["siblings"]["index"]) == (2, 1)
    assert version["parent_id"] == path[1]["id"]
    assert await items_of(tab, thread) == [m["id"] for m in path]
    # Another tab of the thread, on the viewer's process, shows the new version in its place.
    for frame in await other.heard(lambda f: f["type"] == "message"):
        shown = frame["message"]
        assert (shown["id"], shown["parent_id"]) == (version["id"], path[1]["id"])
        assert shown["siblings"]["ids"] == version["siblings"]["ids"]
    for frame in await other.heard(frames.is_terminal):
        assert (frame["type"], frame["message_id"]) == ("complete", path[3]["id"])


async def regenerated(tab: Tab, thread: str, other: "Listener") -> None:
    """A second answer to the last question beside the first, which is kept."""
    path = tab.saved(thread)
    asked = [text for question in QUESTIONS for text in (question, echo(question))]
    assert [m["content"] for m in path] == asked
    assert sent_to_model(tab.stub) == asked[:-1], "not the first answer"
    reply = path[-1]
    assert (reply["siblings"]["count"], reply["siblings"]["index"]) == (2, 1)
    assert reply["siblings"]["ids"][1] == reply["id"] and reply["parent_id"] == path[-2]["id"]
    assert await items_of(tab, thread) == [m["id"] for m in path]
    for frame in await other.heard(lambda f: f["type"] == "message"):
        assert (frame["message"]["id"], frame["message"]["status"]) == (reply["id"], "streaming")
        assert frame["message"]["siblings"]["count"] == 2
    for frame in await other.heard(frames.is_terminal):
        assert (frame["type"], frame["message_id"]) == ("complete", reply["id"])


async def switched(tab: Tab, thread: str, other: "Listener") -> None:
    """The first version's branch, whole, in every view; every tab follows; the next reply,
    asked here, is given that branch."""
    path = tab.saved(thread)
    asked = [text for question in QUESTIONS for text in (question, echo(question))]
    assert [m["content"] for m in path] == asked
    assert (path[2]["siblings"]["count"], path[2]["siblings"]["index"]) == (2, 0)
    leaf = path[-1]["id"]
    assert tab.http.get(f"/api/threads/{thread}/").json()["active_leaf"] == leaf
    assert await items_of(tab, thread) == [m["id"] for m in path]
    for frame in await other.heard(lambda f: f["type"] == "thread"):
        assert (frame["thread"]["id"], frame["thread"]["active_leaf"]) == (thread, leaf)
    completed(await command_by_websocket(tab, thread, {"command": "start", "message": AFTER}))
    assert sent_to_model(tab.stub) == [*asked, AFTER]
    assert tab.saved(thread)[-2]["parent_id"] == leaf


CHECKS = {
    "reply": replied,
    "stop": stopped,
    "rename": renamed,
    "delete": deleted,
    "model": modelled,
    "feedback": rated,
    "attach": sent_with_files,
    "continue": continued,
    "edit": edited,
    "regenerate": regenerated,
    "switch": switched,
}
SLOW = [f" s{i}" for i in range(300)]

CASES = [
    pytest.param(capability, transport, where, id=f"{capability}-{transport}-{where}")
    for capability, transports in ACTIONS.items()
    for transport in transports
    for where in ("one-process", "two-processes")
]


@pytest.mark.parametrize("capability, transport, where", CASES)
async def test_each_capability_works_on_each_transport_and_shows_on_every_other(
    processes, stub, capability, transport, where
):
    stub.script("table reply", tokens=TEXT)
    stub.script("table stop", tokens=SLOW, delay_ms=20)
    stub.script("table long", tokens=LONG)
    stub.script("Continue exactly", tokens=REST)
    a, b = processes
    session = login(a.url, USER, PASSWORD)
    doer = Tab(a, session)
    viewer = Tab(b if where == "two-processes" else a, session)
    viewer.stub = stub
    thread = doer.new_thread("table", model="stub-model")  # the model the table changes
    if capability in ("stop", "rename", "delete", "feedback"):
        await reply_by_websocket(doer, thread)  # a thread with a conversation in it
    if capability == "continue":
        await truncated_by_websocket(doer, thread)
    if capability in ON_THE_THREAD:
        await conversation(doer, thread)
    if capability == "switch":
        await edit_by_websocket(doer, thread)
    # Another tab of the same user, on the viewer's process, showing another thread (or this
    # one, for what changes its branch).
    shown = thread if capability in ON_THE_THREAD else viewer.new_thread("elsewhere")
    other = await viewer.listen(shown)
    try:
        await ACTIONS[capability][transport](doer, thread)
        await CHECKS[capability](viewer, thread, other)
    finally:
        await other.close()
        await doer.close()
        await viewer.close()


REFUSALS = {
    "websocket": model_by_websocket,
    "sse": model_by_sse,
    "chatkit": model_by_chatkit,
    "rest": model_by_rest,
}


@pytest.mark.parametrize("transport", list(REFUSALS))
async def test_a_model_kept_to_a_group_is_neither_listed_nor_usable_on_any_transport(
    processes, stub, transport
):
    a, _ = processes
    tab = Tab(a, login(a.url, USER, PASSWORD))
    try:
        assert "kept-model" not in [m["id"] for m in tab.http.get("/api/models/").json()]
        thread = tab.new_thread("kept", model="stub-model")
        asked = len(chat_requests(stub))
        answer = await REFUSALS[transport](tab, thread, "kept-model")
        if transport == "rest":
            assert answer == 400
        elif transport == "chatkit":
            assert [type(e).__name__ for e in answer] == ["ErrorEvent"]
        else:
            assert [(f["type"], f.get("code")) for f in answer] == [("error", "bad_request")]
        assert tab.saved(thread) == [] and len(chat_requests(stub)) == asked
        assert tab.http.get(f"/api/threads/{thread}/").json()["model"] == "stub-model"
    finally:
        await tab.close()


CONTINUES = {
    "websocket": continue_by_websocket,
    "sse": continue_by_sse,
    "chatkit": continue_by_chatkit,
}


def refusal(transport: str, answer: list) -> str:
    """The code a refused continue got (ChatKit's error event says no code: `error`)."""
    if transport == "chatkit":
        assert [type(e).__name__ for e in answer] == ["ErrorEvent"], answer
        return "error"
    # (A socket also shows the frames of a reply running meanwhile: none of them ends it.)
    assert not any(frames.is_terminal(f) for f in answer), answer
    assert answer[-1]["type"] == "error" and "message_id" not in answer[-1], answer
    return answer[-1]["code"]


@pytest.mark.parametrize("transport", list(CONTINUES))
async def test_a_continue_that_cannot_be_is_refused_on_every_transport_and_changes_nothing(
    processes, stub, transport
):
    """Of a reply not cut, of another user's reply, while a reply runs: a clear refusal."""
    stub.script("table reply", tokens=TEXT)
    stub.script("table long", tokens=LONG)
    stub.script("Continue exactly", tokens=SLOW, delay_ms=20)
    a, _ = processes
    tab = Tab(a, login(a.url, USER, PASSWORD))
    other = Tab(a, login(a.url, OTHER, OTHER_PASSWORD))
    expected = "error" if transport == "chatkit" else "bad_request"
    try:
        whole = tab.new_thread("not cut")
        await reply_by_websocket(tab, whole)
        cut = tab.new_thread("cut")
        await truncated_by_websocket(tab, cut)
        ottos = other.new_thread("otto's")
        others = await truncated_by_websocket(other, ottos)
        before = {thread: tab.saved(thread) for thread in (whole, cut)}
        asked = len(chat_requests(stub))

        continue_ = CONTINUES[transport]
        assert refusal(transport, await continue_(tab, whole)) == expected  # not truncated
        assert refusal(transport, await continue_(tab, cut, others)) == expected  # not hers
        assert {thread: tab.saved(thread) for thread in (whole, cut)} == before
        assert other.saved(ottos)[-1]["truncated"] is True

        ws = await tab.socket(cut)  # a continue running on the page
        await ws.send(json.dumps({"command": "continue", "message_id": last_reply_id(tab, cut)}))
        await frames_until(ws, lambda f: f["type"] == "token")
        busy = "error" if transport == "chatkit" else "busy"
        assert refusal(transport, await continue_(tab, cut)) == busy
        await ws.send(json.dumps({"command": "stop"}))
        await frames_until(ws, frames.is_terminal)
        await ws.close()
        assert len(chat_requests(stub)) == asked + 1  # the page's continue only
    finally:
        await tab.close()
        await other.close()


async def test_a_reply_keeps_its_branch_through_the_second_process(processes, stub):
    """A reply begun on A on the first of two branches: a switch asked on B while it runs is
    refused `busy` and changes nothing; a tab that comes back on B mid-reply (its socket, its
    event stream) resumes that reply (`ready.active`); it is saved after the message it was
    begun after, and the model was given that branch only."""
    first, slow = "the branch kept", "a long answer, please"
    stub.script(slow, tokens=SLOW, delay_ms=50)
    a, b = processes
    session = login(a.url, USER, PASSWORD)
    on_a, on_b = Tab(a, session), Tab(b, session)
    thread = on_a.new_thread("kept")
    try:
        await conversation(on_a, thread, [first])
        stub.script(first, tokens=["Another ", "take."])
        completed(await command_by_websocket(on_a, thread, {"command": "regenerate"}))
        answer, other_answer = on_a.saved(thread)[-1]["siblings"]["ids"]
        back = on_a.http.patch(f"/api/threads/{thread}/", json={"active_leaf": answer})
        assert back.json()["active_leaf"] == answer  # the first branch

        ws = await on_a.socket(thread)
        await ws.send(json.dumps({"command": "start", "message": slow}))
        began = await frames_until(ws, lambda f: f["type"] == "token")
        question = next(f["message"] for f in began if f["type"] == "message")
        reply = began[-1]["message_id"]
        await ws.close()  # the tab on A goes; the reply goes on there
        assert sent_to_model(stub) == [first, echo(first), slow], "not the other branch"

        refused = on_b.http.patch(f"/api/threads/{thread}/", json={"active_leaf": other_answer})
        assert (refused.status_code, refused.json().get("code")) == (409, "busy"), refused.text
        assert on_b.http.get(f"/api/threads/{thread}/").json()["active_leaf"] == reply
        assert [m["id"] for m in on_b.saved(thread)][:3] == [
            on_a.saved(thread)[0]["id"],
            answer,
            question["id"],
        ]

        back_on_b = await on_b.listen(thread)  # a reload, or a reconnect, that lands on B
        try:
            for ready in back_on_b.ready:
                assert ready["active"]["message_id"] == reply, ready
            await back_on_b.ws.send(json.dumps({"command": "stop"}))  # from B: it runs on A
            for frame in await back_on_b.heard(frames.is_terminal):
                assert (frame["message_id"], frame["status"]) == (reply, "cancelled")
        finally:
            await back_on_b.close()

        path = on_b.saved(thread)
        assert [m["id"] for m in path][1:] == [answer, question["id"], reply]
        assert (path[-1]["parent_id"], path[-2]["parent_id"]) == (question["id"], answer)
        assert path[-1]["status"] == "cancelled" and path[-1]["content"].startswith(SLOW[0])
        assert on_b.http.get(f"/api/threads/{thread}/").json()["active_leaf"] == reply
    finally:
        await on_a.close()
        await on_b.close()


async def test_a_branch_command_that_cannot_be_is_refused_on_every_transport_and_changes_nothing(
    processes, stub
):
    """An edit (ChatKit: a retry) naming a message of another thread, of another user, or of
    another branch, and a switch to a message of another thread or another user's: a clear
    refusal on each transport, and no thread changes."""
    a, _ = processes
    tab = Tab(a, login(a.url, USER, PASSWORD))
    otto = Tab(a, login(a.url, OTHER, OTHER_PASSWORD))
    try:
        mine = tab.new_thread("mine")
        await conversation(tab, mine, QUESTIONS[:2])
        await edit_by_websocket(tab, mine)  # the second question's first version: off the path
        off_path = tab.saved(mine)[2]["siblings"]["ids"][0]
        elsewhere = tab.new_thread("elsewhere")
        await conversation(tab, elsewhere, ["another thread"])
        ottos = otto.new_thread("otto's")
        await conversation(otto, ottos, ["otto's own"])
        others = {
            "another thread's": tab.saved(elsewhere)[0]["id"],
            "another user's": otto.saved(ottos)[0]["id"],
        }
        named = {**others, "another branch's": off_path}

        def everything() -> list:
            return [
                tab.saved(mine),
                tab.saved(elsewhere),
                otto.saved(ottos),
                [tab.http.get(f"/api/threads/{t}/").json() for t in (mine, elsewhere)],
            ]

        before, asked = everything(), len(chat_requests(stub))
        for what, message in named.items():
            edit = {"command": "edit", "message_id": message, "message": "not here"}
            by_ws = await command_by_websocket(tab, mine, edit)
            assert [(f["type"], f["code"]) for f in by_ws] == [("error", "bad_request")], what
            (by_sse,) = command_by_sse(tab, mine, edit)
            assert (by_sse["status"], by_sse["code"]) == (400, "bad_request"), what
            by_chatkit = await tab.chatkit.post(ck.retry(mine, message))
            assert by_chatkit.status_code == 404, (what, by_chatkit.text)
            assert by_chatkit.json()["detail"] == "No such message on the branch this thread shows."
        for what, message in others.items():
            switch = tab.http.patch(f"/api/threads/{mine}/", json={"active_leaf": message})
            assert (switch.status_code, switch.json()["code"]) == (400, "bad_request"), what
        ottos_leaf = otto.saved(ottos)[0]["id"]
        switch = tab.http.patch(f"/api/threads/{ottos}/", json={"active_leaf": ottos_leaf})
        assert switch.status_code == 404, "another user's thread is not found"
        assert everything() == before and len(chat_requests(stub)) == asked
    finally:
        await tab.close()
        await otto.close()
