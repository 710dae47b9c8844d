"""The real node process reconnects with exponential backoff, capped, and starts over after a WELCOME.

A scripted scheduler that never answers makes the node give up on each connection after one liveness
window and say HELLO again after its backoff delay, so the gaps between HELLOs are
``window + delay``: with the settings below 0.6, 1.0, 1.8, 1.8 s. The assertions compare consecutive
gaps (the window and the loop's overhead cancel out) with margins of a few hundred ms, so a loaded
machine does not make them flaky, while a constant delay (no doubling) or a missing cap fails them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import Proc, ScriptedScheduler, start_node, write_config

pytestmark = pytest.mark.slow

WINDOW_S = 0.2  # heartbeat 0.1 s x liveness 2: how long the node waits for an answer to HELLO
MIN_S, MAX_S = 0.4, 1.6
CONFIG = {
    "distributed": {
        "heartbeat_interval_s": 0.1,
        "heartbeat_liveness": 2,
        "reconnect_min_s": MIN_S,
        "reconnect_max_s": MAX_S,
    }
}


def _hellos(sched: ScriptedScheduler, count: int) -> list[tuple[float, bytes]]:
    """(arrival time, control identity) of the next ``count`` HELLOs, each within a deadline."""
    out = []
    for _ in range(count):
        _, ident, hello = sched.recv(60 if not out else 10, [p.HELLO])
        out.append((time.monotonic(), ident))
        assert hello.header["task_id"] is None
    return out


def test_reconnect_delays_double_up_to_the_cap_and_reset_after_welcome(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_path: Path
):
    scripted.answer_heartbeats = False  # a scheduler that hears everything and says nothing
    start_node(procs, scripted.endpoint, write_config(tmp_path, CONFIG), "--name", "backoff")
    arrivals = _hellos(scripted, 5)
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # Expected: window + 0.4, + 0.8, + 1.6, + 1.6 (capped) = 0.6, 1.0, 1.8, 1.8 s.
    assert gaps[0] >= WINDOW_S + MIN_S - 0.05, gaps
    assert gaps[1] - gaps[0] >= 0.25, f"second delay did not grow (expected +0.4 s): {gaps}"
    assert gaps[2] - gaps[1] >= 0.55, f"third delay did not double again (expected +0.8 s): {gaps}"
    assert abs(gaps[3] - gaps[2]) <= 0.5, f"delay not capped at {MAX_S} s (expected equal gaps): {gaps}"
    assert len({ident for _, ident in arrivals}) == 5  # a new socket (identity) for every attempt

    # A WELCOME resets the backoff: the next time the scheduler goes silent, the node waits one window
    # (the WELCOME's 0.2 s x 3) plus the minimum delay, not window + the 1.6 s it had reached.
    last_ident = arrivals[-1][1]
    welcomed_at = time.monotonic()
    scripted.welcome(last_ident, "node-backoff", interval=0.2)
    [(again_at, _)] = _hellos(scripted, 1)
    after_welcome = again_at - welcomed_at
    assert 0.6 + MIN_S - 0.1 <= after_welcome < 0.6 + MAX_S - 0.4, (
        f"HELLO {after_welcome:.2f} s after WELCOME: expected about {0.6 + MIN_S:.1f} s (backoff reset)"
    )
