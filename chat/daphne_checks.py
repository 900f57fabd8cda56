"""daphne's periodic check of its connections, spread over the period instead of one burst.

Every 2 s daphne walks all its connections in one pass (`Server.timeout_checker`): each one's
timeouts, and a ping to each WebSocket not pinged for `--ping-interval` (20 s). The pass, the
pings' writes and the pongs read back all run on the event loop at once, so with 5,000 idle
sockets about 500 pings went out every 2 s in one burst, and a reply streaming beside them
had its tokens held back by up to 150 ms at each burst (docs/performance.md, "Idle sockets:
the pings, not the collector"). Here the same pass runs in `SLICES` slices, one every
`PERIOD / SLICES` seconds: every connection is still checked about every 2 s and pinged as
often as before, and each burst is a twentieth of it.
"""

import collections
import math
import sys
from typing import Any

PERIOD = 2.0  # daphne's: how often each connection is checked
SLICES = 20


class Slices:
    """One server's connections, checked a slice at a time.

    A round starts with the connections open then and checks each once, `ceil(n / SLICES)` a
    turn, so a round takes `SLICES` turns; a connection opened meanwhile waits for the next
    round, and one that closed is passed over."""

    def __init__(self, connections: dict[Any, Any]) -> None:
        self.connections = connections  # daphne's: protocol -> its details
        self.left: collections.deque[Any] = collections.deque()
        self.per_turn = 0

    def turn(self) -> int:
        """Check the next slice; how many were checked."""
        if not self.left:
            self.left.extend(self.connections)
            self.per_turn = math.ceil(len(self.left) / SLICES)
        checked = 0
        while self.left and checked < self.per_turn:
            protocol = self.left.popleft()
            if protocol in self.connections:
                protocol.check_timeouts()
                checked += 1
        return checked


def _timeout_checker(server: Any) -> None:
    """daphne's `Server.timeout_checker`, a slice at a time."""
    # The next turn first: a check that raises must not end the checking for good.
    sys.modules["daphne.server"].reactor.callLater(PERIOD / SLICES, server.timeout_checker)
    slices = server.__dict__.get("_chat_slices")
    if slices is None:
        slices = server._chat_slices = Slices(server.connections)
    slices.turn()


def install() -> None:
    """Spread the checks of the daphne server this process runs (chatproject/asgi.py). Not
    imported here: importing daphne's server installs its Twisted reactor, which only daphne
    (and Django's app loading, `daphne` being an installed app) should do."""
    module = sys.modules.get("daphne.server")
    if module is not None:
        module.Server.timeout_checker = _timeout_checker
