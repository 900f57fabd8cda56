"""The garbage collector beside thousands of open sockets: what they keep is frozen out of its
sight once a burst of them has opened.

CPython 3.11 runs a full collection, over every object it tracks, whenever the objects that
came into its oldest generation since the last full one reach a quarter of what that one left.
An open socket is about a hundred such objects (daphne's protocol, autobahn's state, the scope,
the consumer, its subscriber), so while thousands open, a full collection runs every few
seconds over all of them (0.3 to 1.5 s each on a 5,000-socket process, freeing nearly
nothing), and the last quarter to come sets one off later, inside whatever reply streams then
(docs/performance.md, "Idle sockets: the pings, not the collector").

So once GC_FREEZE_SOCKETS sockets (and event streams) have opened since the last freeze, and
none has opened or closed for `QUIET_SECONDS` (or, in a burst that goes on, once they are a
quarter more than were open at the last freeze), everything alive is frozen (`gc.freeze()`):
full collections then scan only what came after it. The cost: objects frozen are never collected
while frozen, and most of a socket's objects sit in reference cycles (the consumer and its
subscriber, autobahn's protocol and its transport: a collection after 5,000 closed took back
96 objects for each), so a frozen socket that closes stays in memory. Once a quarter as many
sockets have closed as were open at the freeze (at least GC_FREEZE_SOCKETS), the next quiet
moment unfreezes, collects once and freezes what is left: at most a quarter more is held than
is alive, the slack CPython's own rule gives its oldest generation, and one full collection
per quarter of the sockets gone, where CPython runs one per quarter of them come.
"""

import asyncio
import gc

from django.conf import settings

from chat import runtime, tasks

QUIET_SECONDS = 1.0  # no socket opened or closed for this long: a quiet moment


class Freezer:
    """This process's open sockets, as far as the collector is concerned (standing.py counts
    them in and out)."""

    def __init__(self) -> None:
        self.open = 0
        self.opened = 0  # since the last freeze
        self.closed = 0  # since the last freeze
        self.open_at_freeze = 0
        self.changed = 0.0  # loop time of the last open or close
        self.task: asyncio.Task | None = None

    def opened_one(self) -> None:
        self.open += 1
        self.opened += 1
        self.changed = asyncio.get_running_loop().time()
        if self.task is None or self.task.done():
            self.task = tasks.background(self._watching(), name="gc-freezer")

    def closed_one(self) -> None:
        self.open -= 1
        self.closed += 1
        self.changed = asyncio.get_running_loop().time()

    async def _watching(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(QUIET_SECONDS)
            self.turn(loop.time())

    def turn(self, now: float) -> str | None:
        """At a quiet moment: collect what closed sockets left frozen, or freeze a burst of
        new ones. What was done (`collected`, `frozen`), or None."""
        least = settings.GC_FREEZE_SOCKETS
        if least <= 0:
            return None
        quiet = now - self.changed >= QUIET_SECONDS
        if quiet and self.open_at_freeze and self.closed >= max(least, self.open_at_freeze / 4):
            gc.unfreeze()
            gc.collect()
            self._freeze()
            return "collected"
        if self.opened >= least and (quiet or self.opened >= self.open_at_freeze / 4):
            gc.collect(1)  # the young garbage, so that it is not frozen with the rest
            self._freeze()
            return "frozen"
        return None

    def _freeze(self) -> None:
        gc.freeze()
        self.open_at_freeze, self.opened, self.closed = self.open, 0, 0


def freezer() -> Freezer:
    """This event loop's freezer (kept by runtime.py)."""
    return runtime.slot("gc-freezer", Freezer)
