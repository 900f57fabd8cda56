"""What one user may use at once, on every transport and every process.

- REPLIES_PER_MINUTE: replies started in a minute;
- MAX_REPLIES_IN_FLIGHT: replies running at once;
- MAX_SOCKETS_PER_USER: WebSockets and thread event streams (SSE) open at once;
- COMMANDS_PER_SECOND: commands on one WebSocket (a per-socket bucket: `CommandBudget`).

Counts live in Redis when there is one, so every process shares them, and in this process
otherwise. The token budget is the database's (quota.py): it must survive restarts.
"""

import time
from collections import defaultdict
from typing import Any

from django.conf import settings

from chat import outage, runtime


async def reply_allowed(*, user_id: int) -> bool:
    """Count one more reply for the user in this minute; False when over the limit.

    A fixed one-minute window.
    """
    limit = settings.REPLIES_PER_MINUTE
    if limit <= 0:
        return True
    window = int(time.time() // 60)
    if settings.REDIS_URL:
        key = f"chat:rate:{user_id}:{window}"
        async with _client().pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
    else:
        replies = counts().replies
        for stale in [k for k in replies if k[1] != window]:
            del replies[stale]
        replies[(user_id, window)] += 1
        count = replies[(user_id, window)]
    return count <= limit


# A user's members of a bounded set (replies in flight, open sockets), each scored with the
# time past which it cannot still be there: a crashed process's members age out on their own.
# A member already in the set is renewed whatever the count.
_BOUNDED_ADD = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if not redis.call('zscore', KEYS[1], ARGV[4]) and
   redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return 1
"""


class Counts:
    """One event loop's limits state (a runtime slot): the counts of this process when
    there is no Redis, and the bounded-set script once registered on the runtime's client."""

    def __init__(self) -> None:
        # (user_id, minute) -> replies started in that minute.
        self.replies: defaultdict[tuple[int, int], int] = defaultdict(int)
        # bounded set name -> user_id -> member -> when it ends.
        self.members: defaultdict[str, defaultdict[int, dict[str, float]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self._bounded_add: Any = None

    def bounded_add(self) -> Any:
        """The bounded-set script on the runtime's Redis client, registered once."""
        if self._bounded_add is None:
            self._bounded_add = _client().register_script(_BOUNDED_ADD)
        return self._bounded_add


class _BoundedSet:
    """At most `cap()` members per user at once, over every process."""

    def __init__(self, name: str, cap_setting: str) -> None:
        self.name = name
        self.cap_setting = cap_setting

    def cap(self) -> int:
        return getattr(settings, self.cap_setting)

    async def add(self, *, user_id: int, member: str, lasts: float) -> bool:
        """Add (or renew) `member` for the next `lasts` seconds; False when the user has
        `cap()` members already. A cap of 0 or less is no limit."""
        cap = self.cap()
        if cap <= 0:
            return True
        now = time.time()
        if settings.REDIS_URL:
            args = [now, now + lasts, cap, member, int(lasts) + 1]
            script = counts().bounded_add()
            return bool(await script(keys=[self._key(user_id)], args=args))
        members = self._members(user_id)
        for stale in [m for m, ends in members.items() if ends <= now]:
            del members[stale]
        if member not in members and len(members) >= cap:
            return False
        members[member] = now + lasts
        return True

    async def remove(self, *, user_id: int, member: str) -> None:
        if self.cap() <= 0:
            return
        if settings.REDIS_URL:
            await _client().zrem(self._key(user_id), member)
        else:
            self._members(user_id).pop(member, None)

    def _key(self, user_id: int) -> str:
        return f"chat:{self.name}:{user_id}"

    def _members(self, user_id: int) -> dict[str, float]:
        return counts().members[self.name][user_id]


_in_flight = _BoundedSet("inflight", "MAX_REPLIES_IN_FLIGHT")
_sockets = _BoundedSet("sockets", "MAX_SOCKETS_PER_USER")


def _longest_reply() -> float:
    return settings.STREAM_TIMEOUT + settings.OUTAGE_SECONDS + 60


async def in_flight_begin(*, user_id: int, reply_id: str) -> bool:
    """Count one more reply in flight for the user; False when MAX_REPLIES_IN_FLIGHT are
    running already (threads are unlimited, so this is what bounds a user's spend at once)."""
    return await _in_flight.add(user_id=user_id, member=reply_id, lasts=_longest_reply())


async def in_flight_end(*, user_id: int, reply_id: str) -> None:
    """The reply is no longer in flight."""
    await _in_flight.remove(user_id=user_id, member=reply_id)


_socket_health = outage.Softly("counting open sockets")


def socket_renew_seconds() -> float:
    """How often an open socket or stream renews its count (standing.py)."""
    return min(settings.SESSION_CHECK_SECONDS, 30.0)


def _socket_lasts() -> float:
    # A socket of a process that died is counted out after a few missed renewals.
    return 3 * socket_renew_seconds() + 30


async def socket_open(*, user_id: int, socket_id: str) -> bool:
    """Count a WebSocket or event stream as open (or renew it); False when the user has
    MAX_SOCKETS_PER_USER open already. Through a Redis outage sockets are let in, uncounted:
    a cap is no reason to cut a user off."""
    try:
        counted = await _sockets.add(user_id=user_id, member=socket_id, lasts=_socket_lasts())
    except Exception as exc:
        if not outage.is_transient(exc):
            raise
        _socket_health.failed(exc)
        return True
    _socket_health.succeeded()
    return counted


async def socket_closed(*, user_id: int, socket_id: str) -> None:
    try:
        await _sockets.remove(user_id=user_id, member=socket_id)
    except Exception as exc:
        if not outage.is_transient(exc):
            raise
        _socket_health.failed(exc)  # its entry ages out


class CommandBudget:
    """COMMANDS_PER_SECOND for one socket: a bucket of twice that many, refilled steadily, so
    a burst (a reconnect's resync and start) passes and a flood does not."""

    def __init__(self) -> None:
        self.rate = settings.COMMANDS_PER_SECOND
        self.tokens = 2.0 * self.rate
        self.at = time.monotonic()
        self.refused_at = -1.0

    def take(self) -> bool:
        """One more command: True when it may run."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(2.0 * self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def tell(self) -> bool:
        """Whether a refusal should be answered: once a second, so a flood is not echoed."""
        now = time.monotonic()
        if now - self.refused_at >= 1:
            self.refused_at = now
            return True
        return False


def counts() -> Counts:
    """This loop's limits state (a runtime slot)."""
    return runtime.slot("limits", Counts)


def _client() -> Any:
    """The process's Redis client: the live store's, one connection pool (runtime.py)."""
    return runtime.redis_client()
