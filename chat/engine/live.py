"""Live state of the replies in flight: text so far, frame boundaries, last `seq`, owner.

The channel layer only wakes subscribers up; this store is the record a reconnecting client
resumes from (a frame may be lost on the way: docs/protocol.md, "Sequence numbers"). Without
Redis it lives in this process; with REDIS_URL it lives in Redis so any process can serve a
snapshot.

Ordering promise: a subscriber joins the thread before it reads a snapshot, and reads it where
the frames it gets are already counted, so snapshot + later frames never leave a gap. Another
process's subscribers read this store, and a frame reaches them only once it is recorded here;
the owning process's read the reply's own state (generation.thread_snapshot), which it updates
before it hands them the frame.

A finished reply's record stays (marked done, with its terminal frame) for a few minutes, so an
EventSource cut off near the end can still be replayed exactly; it no longer counts as active.
"""

import asyncio
import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from chat import runtime

# How long a finished reply stays replayable for resuming event streams.
REPLAY_SECONDS = 300


def record_ttl() -> int:
    """How long a record may outlive a dead owner: longer than any reply may run.

    Liveness is told by the owner's heartbeat, not by this expiry; it only bounds the garbage
    a crash leaves behind.
    """
    return int(settings.STREAM_TIMEOUT) + 60


def frames_channel(thread_id: str) -> str:
    """The Redis channel of a thread's frames, for the other processes (broadcast.py)."""
    return f"chat:frames:{thread_id}"


# The Redis channel of the frames recorded together (`RedisStore.append`'s announcements),
# every thread's: one message per batch, one frame a line (broadcast.py reads it). Not a
# thread's channel: those all end in `:` and a topic.
BATCHED_CHANNEL = "chat:frames"


def owner_beat_seconds() -> float:
    """How often an owner says it is alive: three beats per OWNER_TTL_SECONDS."""
    return settings.OWNER_TTL_SECONDS / 3


@dataclass
class LiveReply:
    """A reply's record: `content` is the text of frames up to and including `seq`."""

    message_id: str
    owner: str
    seq: int
    content: str
    model: str = ""
    # offsets[k]: the length of `content` after frame k (frame 0, `start`, adds nothing).
    offsets: list[int] = field(default_factory=lambda: [0])
    terminal: dict[str, Any] | None = None
    # The reply's tool frames by seq (a tool frame adds no text: its offset repeats).
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the reply has ended (its record is kept only for replay)."""
        return self.terminal is not None

    def frame_texts(self, after_seq: int) -> list[tuple[int, str]]:
        """(seq, text) of each token frame after `after_seq`, cut at the recorded boundaries."""
        return [
            (seq, self.content[self.offsets[seq - 1] : self.offsets[seq]])
            for seq in range(max(after_seq + 1, 1), self.seq + 1)
            if seq not in self.tools
        ]

    def steps(self) -> list[dict[str, Any]]:
        """The reply's tool steps so far: the latest frame of each call, in call order."""
        latest: dict[str, dict[str, Any]] = {}
        for seq in sorted(self.tools):
            frame = self.tools[seq]
            latest[frame["call_id"]] = frame
        return [
            {k: v for k, v in frame.items() if k not in ("type", "ts", "message_id", "seq")}
            for frame in latest.values()
        ]


class LiveStore(Protocol):
    """Where replies in flight are recorded.

    `shared` says whether other processes read the same records (Redis). A shared store can
    lose its records in a restart while their owners live on; the owners write them back.
    """

    shared: bool

    async def claim(self, *, thread_id: str, message_id: str, owner: str, model: str) -> bool:
        """Record a new reply for the thread; False if one is already in flight there."""

    async def append(
        self,
        *,
        thread_id: str,
        message_id: str,
        seq: int,
        text: str,
        announce: str = "",
        tool: dict[str, Any] | None = None,
    ) -> bool:
        """Record frame `seq` of the reply, whose text adds `text` (a `tool` frame: none, and
        the frame itself is kept); False when the record is missing or lacks frame `seq - 1`
        (the caller then restores it whole). A shared store publishes `announce` (one line,
        the frame for other processes: broadcast.py) with the record, on BATCHED_CHANNEL
        together with the other frames recorded in the same step."""

    async def restore(self, *, thread_id: str, reply: LiveReply) -> bool:
        """Write the reply's record whole (after a loss), unless another reply holds the
        thread; a record already as new is left alone. Also says that its owner is alive."""

    async def record(self, *, thread_id: str) -> LiveReply | None:
        """The thread's latest record, in flight or recently done."""

    async def missing(self, *, replies: dict[str, str]) -> set[str]:
        """Of these thread_id -> message_id, the threads whose record is not that reply's."""

    async def finish(self, *, thread_id: str, message_id: str, terminal: dict[str, Any]) -> bool:
        """Mark the reply ended with its terminal frame, kept a while for replay; False when
        the record is missing (the caller restores it with the terminal frame)."""

    async def release(self, *, thread_id: str, message_id: str) -> None:
        """Forget the reply's record at once."""

    async def owner_beat(self, *, owner: str) -> None:
        """Say that this owner process is alive."""

    async def owner_alive(self, *, owner: str) -> bool:
        """Whether the owner process said recently that it is alive."""

    async def sweep_turn(self, *, seconds: float) -> bool:
        """Whether this process sweeps now (ownership.py): one process in `seconds`."""


async def snapshot(store: LiveStore, *, thread_id: str) -> LiveReply | None:
    """The thread's reply in flight, if any (a done record is not in flight)."""
    reply = await store.record(thread_id=thread_id)
    return None if reply is None or reply.done else reply


class MemoryStore:
    """One process: the laptop default. Its records die with the process that owns them."""

    shared = False

    def __init__(self) -> None:
        self._replies: dict[str, LiveReply] = {}
        self._expiry: dict[str, float] = {}

    async def claim(self, *, thread_id: str, message_id: str, owner: str, model: str) -> bool:
        current = await self.record(thread_id=thread_id)
        if current is not None and not current.done:
            return False
        self._replies[thread_id] = LiveReply(message_id, owner, 0, "", model)
        self._expiry.pop(thread_id, None)
        return True

    async def append(
        self,
        *,
        thread_id: str,
        message_id: str,
        seq: int,
        text: str,
        announce: str = "",
        tool: dict[str, Any] | None = None,
    ) -> bool:
        reply = self._replies.get(thread_id)
        if reply is None or reply.message_id != message_id or reply.seq != seq - 1:
            return False
        if not reply.done:
            reply.content += text
            reply.seq = seq
            reply.offsets.append(len(reply.content))
            if tool is not None:
                reply.tools[seq] = tool
        return True

    async def restore(self, *, thread_id: str, reply: LiveReply) -> bool:
        current = self._replies.get(thread_id)
        if current is not None and current.message_id != reply.message_id and not current.done:
            return False
        if current is None or current.message_id != reply.message_id or current.seq < reply.seq:
            self._replies[thread_id] = copy.deepcopy(reply)
        if reply.terminal is not None:
            return await self.finish(
                thread_id=thread_id, message_id=reply.message_id, terminal=reply.terminal
            )
        return True

    async def record(self, *, thread_id: str) -> LiveReply | None:
        expires = self._expiry.get(thread_id)
        if expires is not None and expires < asyncio.get_running_loop().time():
            self._replies.pop(thread_id, None)
            self._expiry.pop(thread_id, None)
        return self._replies.get(thread_id)

    async def missing(self, *, replies: dict[str, str]) -> set[str]:
        return {
            thread_id
            for thread_id, message_id in replies.items()
            if (reply := self._replies.get(thread_id)) is None or reply.message_id != message_id
        }

    async def finish(self, *, thread_id: str, message_id: str, terminal: dict[str, Any]) -> bool:
        reply = self._replies.get(thread_id)
        if reply is None or reply.message_id != message_id:
            return False
        reply.terminal = terminal
        loop = asyncio.get_running_loop()
        self._expiry[thread_id] = loop.time() + REPLAY_SECONDS
        # Forgotten when the replay window ends, whether or not anyone reads it again.
        loop.call_later(REPLAY_SECONDS, self._forget, thread_id, message_id)
        return True

    def _forget(self, thread_id: str, message_id: str) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None and reply.message_id == message_id and reply.done:
            del self._replies[thread_id]
            self._expiry.pop(thread_id, None)

    async def release(self, *, thread_id: str, message_id: str) -> None:
        reply = self._replies.get(thread_id)
        if reply is not None and reply.message_id == message_id:
            del self._replies[thread_id]
            self._expiry.pop(thread_id, None)

    async def owner_beat(self, *, owner: str) -> None:
        return None

    async def owner_alive(self, *, owner: str) -> bool:
        # Only this process exists; its own owner is alive while it runs.
        return True

    async def sweep_turn(self, *, seconds: float) -> bool:
        return True  # the only process


# Each script runs atomically, so a record is written whole or not at all: a crash or a Redis
# restart between two commands can neither lock a thread forever nor leave text without its
# seq. A record is whole when its hash has `message_id`; anything less (a hash rebuilt by a
# write that met an empty Redis) counts as no record.
_CLAIM = """
if redis.call('hget', KEYS[1], 'message_id')
   and redis.call('hexists', KEYS[1], 'terminal') == 0 then
  return 0
end
redis.call('del', KEYS[1], KEYS[2], KEYS[3])
redis.call('hset', KEYS[1], 'message_id', ARGV[1], 'owner', ARGV[2], 'seq', 0, 'model', ARGV[4])
redis.call('set', KEYS[2], '')
redis.call('rpush', KEYS[3], 0)
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[3]) end
return 1
"""
# Appends only to its own reply's record, and only the next frame: a record lost in a restart,
# or one that missed a frame because a write timed out, is restored whole by its owner instead.
# One call appends the frames of every reply that flushed in one turn of the loop (`_Appends`),
# each judged alone, and publishes the announcements of those it recorded to the other
# processes in the same step, as ONE message (one a line): the receiving process then reads
# one message per turn of this one, not one per frame. KEYS: three per frame (record, text,
# offsets); ARGV: ttl, channel, then five per frame: message_id, seq, text, tool frame ('' if
# none), announcement ('' if none). Answers 1 or 0 per frame.
_APPEND = """
local answers, heard = {}, {}
for i = 1, #KEYS / 3 do
  local k, a = 3 * (i - 1), 2 + 5 * (i - 1)
  local meta, seq = KEYS[k + 1], ARGV[a + 2]
  answers[i] = 0
  if redis.call('hget', meta, 'message_id') == ARGV[a + 1] then
    if redis.call('hexists', meta, 'terminal') == 1 then
      answers[i] = 1
    elseif tonumber(redis.call('hget', meta, 'seq')) == tonumber(seq) - 1 then
      local length = redis.call('append', KEYS[k + 2], ARGV[a + 3])
      redis.call('rpush', KEYS[k + 3], length)
      redis.call('hset', meta, 'seq', seq)
      if ARGV[a + 4] ~= '' then redis.call('hset', meta, 'tool:' .. seq, ARGV[a + 4]) end
      for j = 1, 3 do redis.call('expire', KEYS[k + j], ARGV[1]) end
      if ARGV[a + 5] ~= '' then heard[#heard + 1] = ARGV[a + 5] end
      answers[i] = 1
    end
  end
end
if #heard > 0 then redis.call('publish', ARGV[2], table.concat(heard, '\\n')) end
return answers
"""
# ARGV: message_id, owner, seq, model, text, terminal ('' if none), ttl, owner_ttl, tool frames
# (seq, frame, seq, frame, ... as one cjson array), offsets...
_RESTORE = """
local holder = redis.call('hget', KEYS[1], 'message_id')
local ended = redis.call('hexists', KEYS[1], 'terminal') == 1
if holder and holder ~= ARGV[1] and not ended then return 0 end
redis.call('set', KEYS[4], '1', 'EX', ARGV[8])
local seq = tonumber(redis.call('hget', KEYS[1], 'seq') or -1)
if holder == ARGV[1] and (ended or seq >= tonumber(ARGV[3])) and ARGV[6] == '' then
  return 1
end
redis.call('del', KEYS[1], KEYS[2], KEYS[3])
redis.call('hset', KEYS[1], 'message_id', ARGV[1], 'owner', ARGV[2], 'seq', ARGV[3])
redis.call('hset', KEYS[1], 'model', ARGV[4])
redis.call('set', KEYS[2], ARGV[5])
local tools = cjson.decode(ARGV[9])
for i = 1, #tools, 2 do redis.call('hset', KEYS[1], 'tool:' .. tools[i], tools[i + 1]) end
for i = 10, #ARGV do redis.call('rpush', KEYS[3], ARGV[i]) end
if ARGV[6] ~= '' then redis.call('hset', KEYS[1], 'terminal', ARGV[6]) end
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[7]) end
return 1
"""
_FINISH = """
if redis.call('hget', KEYS[1], 'message_id') ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[1], 'terminal', ARGV[2])
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[3]) end
return 1
"""
_RELEASE = """
if redis.call('hget', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('del', KEYS[1], KEYS[2], KEYS[3])
end
return 1
"""
_DROP_PARTIAL = """
if not redis.call('hget', KEYS[1], 'message_id') then
  redis.call('del', KEYS[1], KEYS[2], KEYS[3])
end
return 1
"""


class RedisStore:
    """Many processes: the record is in Redis, text appended per frame (never per token)."""

    shared = True

    def __init__(self, client: Any) -> None:
        """`client`: the process's Redis client (runtime.redis_client()), or a URL to open one
        for (a test's own store)."""
        self._redis = runtime.connect_redis(client) if isinstance(client, str) else client
        self._claim = self._redis.register_script(_CLAIM)
        self._appends = _Appends(self._redis.register_script(_APPEND))
        self._restore = self._redis.register_script(_RESTORE)
        self._finish = self._redis.register_script(_FINISH)
        self._release = self._redis.register_script(_RELEASE)
        self._drop_partial = self._redis.register_script(_DROP_PARTIAL)

    @staticmethod
    def _keys(thread_id: str) -> list[str]:
        base = f"chat:live:{thread_id}"
        return [base, f"{base}:text", f"{base}:offsets"]

    @staticmethod
    def _owner_key(owner: str) -> str:
        return f"chat:owner:{owner}"

    async def claim(self, *, thread_id: str, message_id: str, owner: str, model: str) -> bool:
        args = [message_id, owner, record_ttl(), model]
        return bool(await self._claim(keys=self._keys(thread_id), args=args))

    async def append(
        self,
        *,
        thread_id: str,
        message_id: str,
        seq: int,
        text: str,
        announce: str = "",
        tool: dict[str, Any] | None = None,
    ) -> bool:
        tool_text = json.dumps(tool) if tool is not None else ""
        args = (message_id, seq, text, tool_text, announce)
        return bool(await self._appends.call(self._keys(thread_id), args))

    async def restore(self, *, thread_id: str, reply: LiveReply) -> bool:
        terminal = json.dumps(reply.terminal) if reply.terminal is not None else ""
        ttl = REPLAY_SECONDS if reply.terminal is not None else record_ttl()
        args = [
            reply.message_id,
            reply.owner,
            reply.seq,
            reply.model,
            reply.content,
            terminal,
            ttl,
            int(settings.OWNER_TTL_SECONDS),
            json.dumps([x for seq, frame in reply.tools.items() for x in (seq, json.dumps(frame))]),
            *reply.offsets,
        ]
        keys = [*self._keys(thread_id), self._owner_key(reply.owner)]
        return bool(await self._restore(keys=keys, args=args))

    async def record(self, *, thread_id: str) -> LiveReply | None:
        meta, text, offsets = self._keys(thread_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(meta)
            pipe.get(text)
            pipe.lrange(offsets, 0, -1)
            fields, content, bounds = await pipe.execute()
        if not fields:
            return None
        if "message_id" not in fields or "seq" not in fields:
            # Not a record: what a write leaves in an empty Redis. Heal it, and read as none.
            await self._drop_partial(keys=self._keys(thread_id), args=[])
            return None
        return LiveReply(
            message_id=fields["message_id"],
            owner=fields.get("owner", ""),
            seq=int(fields["seq"]),
            content=content or "",
            model=fields.get("model", ""),
            offsets=[int(b) for b in bounds] or [0],
            terminal=json.loads(fields["terminal"]) if "terminal" in fields else None,
            tools={
                int(name[5:]): json.loads(value)
                for name, value in fields.items()
                if name.startswith("tool:")
            },
        )

    async def missing(self, *, replies: dict[str, str]) -> set[str]:
        if not replies:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for thread_id in replies:
                pipe.hget(self._keys(thread_id)[0], "message_id")
            holders = await pipe.execute()
        return {
            thread_id
            for (thread_id, message_id), holder in zip(replies.items(), holders, strict=True)
            if holder != message_id
        }

    async def finish(self, *, thread_id: str, message_id: str, terminal: dict[str, Any]) -> bool:
        args = [message_id, json.dumps(terminal), REPLAY_SECONDS]
        return bool(await self._finish(keys=self._keys(thread_id), args=args))

    async def release(self, *, thread_id: str, message_id: str) -> None:
        await self._release(keys=self._keys(thread_id), args=[message_id])

    async def owner_beat(self, *, owner: str) -> None:
        await self._redis.set(self._owner_key(owner), "1", ex=int(settings.OWNER_TTL_SECONDS))

    async def owner_alive(self, *, owner: str) -> bool:
        return bool(await self._redis.exists(self._owner_key(owner)))

    async def sweep_turn(self, *, seconds: float) -> bool:
        # One lock per database swept: two sites sharing a Redis do not wait on each other.
        database = str(settings.DATABASES["default"].get("NAME", ""))
        key = f"chat:sweep:{hashlib.sha1(database.encode()).hexdigest()[:12]}"
        return bool(await self._redis.set(key, "1", nx=True, px=int(seconds * 1000)))


class _Appends:
    """The appends of every reply of this process, sent to Redis together: those made in one
    turn of the event loop go as ONE call of the append script, one round trip, and their
    announcements as one message to the other processes. A quiet process sends each alone; a
    busy one many per call, at a fraction of the CPU each (redis-py's cost, and the receiving
    process's, is per message more than per frame). Each reply still awaits its own answer,
    in order: a reply has at most one append in flight, as it awaits each before the next."""

    def __init__(self, script: Any) -> None:
        self._script = script
        self._pending: list[tuple[list[str], tuple[Any, ...], asyncio.Future]] = []
        self._sending: asyncio.Task | None = None

    def call(self, keys: list[str], args: tuple[Any, ...]) -> asyncio.Future:
        """The append's answer (1 or 0) for these keys and args, once its batch is sent."""
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        self._pending.append((keys, args, result))
        if self._sending is None:
            # Starts on the loop's next turn: the calls made in this one join the batch.
            self._sending = loop.create_task(self._send())
        return result

    async def _send(self) -> None:
        batch, self._pending, self._sending = self._pending, [], None
        keys: list[str] = []
        args: list[Any] = [record_ttl(), BATCHED_CHANNEL]
        for frame_keys, frame_args, _ in batch:
            keys.extend(frame_keys)
            args.extend(frame_args)
        try:
            # A Redis that restarted and forgot the script: the Script object loads it again.
            answers = await self._script(keys=keys, args=args)
        except Exception as exc:
            for _, _, result in batch:
                if not result.done():
                    result.set_exception(exc)
            return
        for (_, _, result), answer in zip(batch, answers, strict=True):
            if not result.done():  # else its caller was cancelled meanwhile
                result.set_result(answer)


def store() -> LiveStore:
    """This event loop's store, chosen by REDIS_URL (kept by runtime.py)."""
    return runtime.slot("store", _new_store)


def _new_store() -> "LiveStore":
    return RedisStore(runtime.redis_client()) if settings.REDIS_URL else MemoryStore()
