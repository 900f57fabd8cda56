"""A socket's or stream's standing: counted among its user's sockets, and ended as soon as what
opened it (a session or a client secret: auth.Credential) no longer holds.

Logout, a password change, deactivation and a deleted user announce themselves
(`credentials_changed`, from Django's signals): every process hears it through its hub
(broadcast.py, on the user's own topic), and each WebSocket, event stream and ChatKit stream
of that user checks its credential at once, so it ends within moments on every process. The
periodic check every SESSION_CHECK_SECONDS stays as the net: an announcement lost in a Redis
outage, a session deleted by hand, a secret's expiry.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import post_delete, post_save

from chat import auth, limits, metrics, tasks
from chat.engine import broadcast
from chat.models import ClientSecretGrant

logger = logging.getLogger(__name__)

_CHANGED = {"type": "credentials"}  # what the topic carries: no data, only "check now"


class Standing:
    """One socket or stream of a user: counted against MAX_SOCKETS_PER_USER while open; when
    its credential stops holding, `lost` turns true and `on_lost` (set by the transport once
    it has something to wake) is called once."""

    def __init__(
        self,
        credential: auth.Credential,
        on_lost: Callable[[], Awaitable[None]] | None = None,
        *,
        transport: str,
    ) -> None:
        self.credential = credential
        self.on_lost = on_lost
        self.transport = transport  # websocket, sse or chatkit: its open-connections series
        self.socket_id = uuid.uuid4().hex
        self.counted = False
        self.lost = False
        self._changed = asyncio.Event()
        self._watch: asyncio.Task | None = None

    async def open(self) -> bool:
        """Count it (False: the user has MAX_SOCKETS_PER_USER open already) and start
        watching its credential."""
        user_id = self.credential.user_id
        self.counted = await limits.socket_open(user_id=user_id, socket_id=self.socket_id)
        if not self.counted:
            metrics.refused("rate_limited")
        if self.counted:
            metrics.OPEN_CONNECTIONS.labels(self.transport).inc()
            await broadcast.hub().subscribe(broadcast.user_topic(user_id), self)
            self._watch = tasks.background(self._watching(), name=f"standing-{self.socket_id}")
        return self.counted

    async def close(self) -> None:
        """Stop watching, and count it out."""
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        if self.counted:
            self.counted = False
            metrics.OPEN_CONNECTIONS.labels(self.transport).dec()
            user_id = self.credential.user_id
            broadcast.hub().unsubscribe(broadcast.user_topic(user_id), self)
            await limits.socket_closed(user_id=user_id, socket_id=self.socket_id)

    async def __aenter__(self) -> "Standing":
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def deliver(self, frame: dict[str, Any], text: str) -> None:
        """An event of the user's (broadcast.Subscriber): when their credentials changed
        somewhere, check now. (Their thread list's frames are for a `Subscriber`.)"""
        if frame.get("type") == _CHANGED["type"]:
            self._changed.set()

    async def _watching(self) -> None:
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), limits.socket_renew_seconds())
            except TimeoutError:
                pass
            if self._changed.is_set() or loop.time() - checked >= settings.SESSION_CHECK_SECONDS:
                self._changed.clear()
                checked = loop.time()
                if not await self.credential.holds():
                    self.lost = True
                    if self.on_lost is not None:
                        await self.on_lost()
                    return
            await limits.socket_open(user_id=self.credential.user_id, socket_id=self.socket_id)


async def credentials_changed(*, user_id: int) -> None:
    """Tell every process that the user's sessions or password changed: each of their
    sockets and streams checks its credential now."""
    await broadcast.publish(broadcast.user_topic(user_id), _CHANGED)


def announce(user_id: int) -> None:
    """`credentials_changed` from synchronous code, once the transaction commits."""
    broadcast.publish_after_commit([broadcast.user_topic(user_id)], _CHANGED)


def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    # Django flushes the session after this signal: end it now, so the checks it triggers
    # find it gone. Its client secrets go with it.
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        ClientSecretGrant.objects.filter(session_key=session.session_key).delete()
        session.delete()
    announce(user.pk)


def _user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login: nothing that opened a socket changed
    announce(instance.pk)


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    announce(instance.pk)


def connect_signals() -> None:
    """Announce logouts, password changes, deactivations and deletions (apps.py)."""
    user_logged_out.connect(_logged_out, dispatch_uid="chat.standing.logged_out")
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="chat.standing.saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="chat.standing.deleted")
