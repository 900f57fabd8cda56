"""A short WebSocket fuzz over a real daphne: scripts/fuzz_ws.py with 500 frames (the
10,000-frame run and its figures are in docs/fuzzing.md)."""

import pytest

from scripts import fuzz_ws
from tests.servers import prepare

pytestmark = [pytest.mark.slow]

FRAMES = 500


def test_generated_frames_are_answered_and_never_break_the_socket(stub_server, tmp_path):
    stub_server.reset()  # the stub echoes: no script left by another test answers instead
    tally = fuzz_ws.run(
        stub_url=stub_server.url, var_dir=tmp_path, frames=FRAMES, seed=2, prepare=prepare
    )

    assert tally.failures == [], tally.report()
    assert sum(tally.sent.values()) - tally.sent["limited_flood"] >= FRAMES
    assert tally.closes[1011] == 0 and tally.http_5xx == 0 and tally.log_lines == 0
    assert tally.final_heartbeat, tally.report()
    assert tally.limited["heartbeat answered"] == 1, tally.report()
