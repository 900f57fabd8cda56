"""Helpers for the in-process tests: threads to start from, and the real ASGI application
driven in-process."""

import json
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat import frames
from chat.models import Message, Thread
from chatproject.asgi import application

ORIGIN = b"http://127.0.0.1:8000"


def make_thread(owner, title: str = "", *texts: str) -> Thread:
    """A thread of the owner's with these messages, the user's and the assistant's in turn."""
    thread = Thread.objects.create(owner=owner, title=title)
    for i, text in enumerate(texts):
        thread.active_leaf = Message.objects.create(
            thread=thread,
            role="user" if i % 2 == 0 else "assistant",
            content=text,
            parent=thread.active_leaf,
        )
    if texts:
        thread.save(update_fields=["active_leaf"])
    return thread


async def new_thread(owner, title: str = "", *texts: str) -> Thread:
    """`make_thread` from an async test."""
    return await database_sync_to_async(make_thread)(owner, title, *texts)


@sync_to_async
def session_cookie(user) -> str:
    """A logged-in session for the user, as a Cookie header value."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def connect(
    thread_id: Any, user=None, *, origin: bytes = ORIGIN, path: str | None = None
) -> WebsocketCommunicator:
    """A socket on the thread (or at `path`: `/ws/user/`) through the whole stack (Origin
    check, session auth, router)."""
    headers = [(b"origin", origin), (b"host", b"127.0.0.1:8000")]
    if user is not None:
        headers.append((b"cookie", (await session_cookie(user)).encode()))
    path = path or f"/ws/threads/{thread_id}/"
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def receive(communicator: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    """The next frame."""
    return json.loads(await communicator.receive_from(timeout=timeout))


async def send(communicator: WebsocketCommunicator, payload: dict[str, Any] | str) -> None:
    """Send a command (a dict) or raw text."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    await communicator.send_to(text_data=text)


def start_command(message: str, client_id: str | None = None) -> dict[str, Any]:
    """A `start` command with a fresh client_id."""
    return {"command": "start", "message": message, "client_id": client_id or str(uuid.uuid4())}


async def frames_until_end(
    communicator: WebsocketCommunicator, timeout: float = 10
) -> list[dict[str, Any]]:
    """Every frame up to and including the one that ends a reply."""
    received = []
    while True:
        frame = await receive(communicator, timeout)
        received.append(frame)
        if frames.is_terminal(frame):
            return received


def reply_text(received: list[dict[str, Any]]) -> str:
    """The reply text the frames carried."""
    return "".join(f["token"] for f in received if f["type"] == "token")


def client_secret(user) -> str:
    """A client secret as a browser gets one: minted by one of the user's logged-in sessions
    (it lives as long as that session)."""
    client = Client()
    client.force_login(user)
    return client.post("/api/chatkit/session").json()["client_secret"]
