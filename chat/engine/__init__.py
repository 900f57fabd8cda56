"""The reply engine: how a reply begins, runs, is seen live and ends, on any process.

- `generation.py`: the service every transport calls: `reply_begin` with an `Ask`,
  `reply_stop`, and what a client reads (`thread_snapshot`, `thread_replay`,
  `thread_heartbeat`).
- `run.py`: one reply's run once it has begun: the agent's deltas coalesced (`coalescer.py`)
  into numbered frames, recorded, published, and one final write.
- `live.py`: the live record of each reply in flight (in this process, or in Redis), from
  which any process serves a snapshot or a replay.
- `broadcast.py`: the fan-out of frames to a thread's (and a user's) subscribers, this
  process's directly and the others' through Redis.
- `subscription.py`: the one subscriber every transport holds (pushed to a WebSocket, pulled
  by SSE and ChatKit): joins before any snapshot, holds frames until its `ready` or replay,
  lets each through once by `seq`, fills gaps from the record, and carries the user's
  thread list.
- `ownership.py`: which process owns each reply (registry, heartbeat, checkpoints, claims)
  and the reaping and sweeping of replies whose process died.

The web layer (consumers.py, api/, chatkit/, admin.py) sits on top and only maps what it got
to the engine's calls; the engine reaches the database through services.py and selectors.py.
"""
