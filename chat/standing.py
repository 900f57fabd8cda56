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
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import post_delete, post_save

from chat import auth, collector, dbthread, limits, metrics, outage, runtime, tasks
from chat.engine import broadcast
from chat.models import ClientSecretGrant

logger = logging.getLogger(__name__)

_CHANGED = {"type": "credentials"}  # what the topic carries: no data, only "check now"


class Standing:
    """One socket or stream of a user: counted against MAX_SOCKETS_PER_USER while open; when
    its credential stops holding, `lost` turns true and `on_lost` (set by the transport once
    it has something to wake) is called once.

    It holds no task of its own: this process's `_Watch` renews and checks every open standing
    from one task, each credential once however many sockets share it."""

    __slots__ = ("checked", "counted", "credential", "lost", "on_lost", "socket_id", "transport")

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
        self.checked = 0.0  # when its credential was last found to hold (loop time)

    async def open(self) -> bool:
        """Count it (False: the user has MAX_SOCKETS_PER_USER open already) and start
        watching its credential."""
        user_id = self.credential.user_id
        self.counted = await limits.socket_open(user_id=user_id, socket_id=self.socket_id)
        if not self.counted:
            metrics.refused("rate_limited")
        if self.counted:
            metrics.OPEN_CONNECTIONS.labels(self.transport).inc()
            collector.freezer().opened_one()
            await broadcast.hub().subscribe(broadcast.user_topic(user_id), self)
            _watch().add(self)
        return self.counted

    async def close(self) -> None:
        """Stop watching, and count it out."""
        _watch().discard(self)
        if self.counted:
            self.counted = False
            metrics.OPEN_CONNECTIONS.labels(self.transport).dec()
            collector.freezer().closed_one()
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
            _watch().check_soon(self)

    def _lose(self) -> None:
        """Its credential no longer holds: say so, once."""
        self.lost = True
        _watch().discard(self)
        if self.on_lost is not None:
            tasks.background(self.on_lost(), name=f"standing-lost-{self.socket_id}")


# How many distinct credentials one trip to the database thread checks: a reply's own calls
# queue behind at most this many.
_CHECKS_PER_TRIP = 20


class _Watch:
    """This process's open standings, renewed and checked by one task.

    Kept in the order they fall due (a standing renewed goes to the back), so a turn touches
    only the standings due, never all of them; sockets opened together fall due together, and
    their common credentials (one session's tabs) are checked once for all. A standing whose
    user's credentials changed somewhere is checked at the next turn, at once.
    """

    def __init__(self) -> None:
        self.due: dict[Standing, float] = {}  # standing -> when it is renewed next, in order
        self.urgent: set[Standing] = set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def add(self, standing: Standing) -> None:
        now = asyncio.get_running_loop().time()
        standing.checked = now
        self.due[standing] = now + limits.socket_renew_seconds()
        if self.task is None or self.task.done():
            self.task = tasks.background(self._watching(), name="standings")

    def discard(self, standing: Standing) -> None:
        self.due.pop(standing, None)
        self.urgent.discard(standing)

    def check_soon(self, standing: Standing) -> None:
        if standing in self.due:
            self.urgent.add(standing)
            self.wake.set()

    async def _watching(self) -> None:
        loop = asyncio.get_running_loop()
        while self.due:
            if not self.urgent:
                first = next(iter(self.due.values()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(0.0, first - loop.time()))
            self.wake.clear()
            try:
                await self._turn(loop.time())
            except Exception:
                logger.exception("checking the open sockets' credentials failed")
                await asyncio.sleep(1)

    async def _turn(self, now: float) -> None:
        # Standings that fall due within a moment of this turn share it (a little early, never
        # late): sockets opened together are checked together.
        window = min(1.0, limits.socket_renew_seconds() / 10)
        due = []
        for standing, at in self.due.items():
            if at > now + window:
                break
            due.append(standing)
        urgent, self.urgent = self.urgent, set()
        renew = limits.socket_renew_seconds()
        for standing in due:  # to the back, in order
            del self.due[standing]
            self.due[standing] = now + renew
        check = [
            s
            for s in {*urgent, *due}
            if s in self.due
            and (s in urgent or now + window - s.checked >= settings.SESSION_CHECK_SECONDS)
        ]
        await self._check(check, now)
        for standing in due:
            if standing in self.due:
                await limits.socket_open(
                    user_id=standing.credential.user_id, socket_id=standing.socket_id
                )

    async def _check(self, standings: list[Standing], now: float) -> None:
        """Check each distinct credential once; the standings whose credential is gone lose."""
        credentials = list({s.credential for s in standings})
        lost: set[auth.Credential] = set()
        for start in range(0, len(credentials), _CHECKS_PER_TRIP):
            chunk = credentials[start : start + _CHECKS_PER_TRIP]
            lost |= await _lost_of(chunk)
        for standing in standings:
            standing.checked = now
            if standing.credential in lost and standing in self.due:
                standing._lose()


async def _lost_of(credentials: list[auth.Credential]) -> set[auth.Credential]:
    """Of these credentials, the ones that no longer hold (one trip off the event loop); an
    outage of the database is not a logout."""
    try:
        return await dbthread.off_loop(_invalid)(credentials)
    except Exception as exc:
        if not outage.is_transient(exc):
            raise
        return set()


def _invalid(credentials: list[auth.Credential]) -> set[auth.Credential]:
    return {c for c in credentials if not c.still_valid()}


def _watch() -> _Watch:
    """This event loop's watch (kept by runtime.py)."""
    return runtime.slot("standings", _Watch)


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
