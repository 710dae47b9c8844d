"""The chaos soak, short: every fault of ``benchmarks/chaos.py`` once, and the zero figures.

The real stack (``tests/support/chaos``): a web server with its embedded scheduler and journal on
disk, two node subprocesses behind loopback proxies, four client threads submitting 150 ``cv2``
tasks with idempotency keys and retrying with the same key (every tenth key POSTed twice at once,
every tenth task sent to the classic ``/inpaint`` instead). Meanwhile, at fixed points of the
progress: a node is SIGKILLed and restarted, a node's link is cut for longer than the liveness
window (the scheduler declares it lost and re-queues its task), a node's inference process is
SIGKILLed, the clients' connections are cut (replies lost in flight), a node is frozen (SIGSTOP)
past the liveness window and thawed, the server is SIGKILLed and restarted on the same ports and
journal, and finally it is stopped gracefully (SIGTERM: new work refused with 503, retried) and
started again.

Asserted: every task accepted and completed with the oracle's image, none lost, no key that
ever named two tasks, and no final state or image that changed when asked again afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos.cluster import ClusterSettings
from tests.support.chaos.faults import (
    CLIENT_CUT,
    INFERENCE_KILL,
    LINK_CUT,
    NODE_FREEZE,
    NODE_KILL,
    SCHEDULER_KILL,
    SERVER_KILL,
    SERVER_TERM,
    Fault,
)
from tests.support.chaos.soak import SoakSettings, run_soak
from tests.support.chaos.verdict import format_report

pytestmark = pytest.mark.slow

PLAN = (
    Fault(0.1, NODE_KILL, node=0, hold_s=0.5),
    Fault(0.2, LINK_CUT, node=1, hold_s=2.0),
    Fault(0.3, INFERENCE_KILL, node=0),
    Fault(0.4, CLIENT_CUT, hold_s=0.5),
    Fault(0.5, NODE_FREEZE, node=1, hold_s=1.5),
    Fault(0.6, SERVER_KILL),
    Fault(0.75, SERVER_TERM),
)
"""One of each fault, in this order; the link cut and the freeze outlast the 1 s liveness window."""
MAX_ATTEMPTS = 5
"""More than the four faults that can charge an attempt, so no task can fail for lack of attempts."""


def test_a_short_chaos_soak_loses_nothing_and_delivers_each_key_once(tmp_path: Path):
    settings = SoakSettings(
        tasks=150, seed=11, deadline_s=150, recheck_s=60, cluster=ClusterSettings(nodes=2, max_attempts=MAX_ATTEMPTS)
    )
    report = run_soak(settings, tmp_path, plan=list(PLAN), say=lambda line: None)
    print(format_report(report))  # shown by pytest when the test fails

    assert [f["kind"] for f in report["faults"]] == [f.kind for f in PLAN]
    assert report["server_starts"] == 3  # the first start, after the SIGKILL, after the SIGTERM
    assert report["node_starts"] == 3  # two, and the killed one again
    assert report["lost"] == 0, report["examples"]["lost"]
    assert report["delivered_twice"] == 0, report["examples"]["delivered_twice"]
    assert report["wrong_results"] == 0, report["examples"]["wrong_results"]
    assert report["notes"] == []
    assert report["accepted"] == report["completed"] == 150, (report["failed_reasons"], report["refused_reasons"])
    assert report["ok"]


STANDALONE_PLAN = (
    Fault(0.15, SCHEDULER_KILL),
    Fault(0.3, NODE_KILL, node=1, hold_s=0.5),
    Fault(0.45, SERVER_KILL),
    Fault(0.6, LINK_CUT, node=0, hold_s=2.0),
    Fault(0.75, SCHEDULER_KILL),
)
"""With ``lama-cleaner scheduler`` in its own process the web server and the scheduler fail apart:
the web server's scheduler client must reconnect and re-send what was in flight."""


def test_with_a_standalone_scheduler_killed_twice_nothing_is_lost_or_delivered_twice(tmp_path: Path):
    cluster = ClusterSettings(nodes=2, max_attempts=MAX_ATTEMPTS, external_scheduler=True)
    settings = SoakSettings(tasks=120, seed=12, deadline_s=150, recheck_s=60, cluster=cluster)
    report = run_soak(settings, tmp_path, plan=list(STANDALONE_PLAN), say=lambda line: None)
    print(format_report(report))

    assert [f["kind"] for f in report["faults"]] == [f.kind for f in STANDALONE_PLAN]
    assert (report["scheduler_starts"], report["server_starts"]) == (3, 2)
    assert report["lost"] == 0, report["examples"]["lost"]
    assert report["delivered_twice"] == 0, report["examples"]["delivered_twice"]
    assert report["wrong_results"] == 0, report["examples"]["wrong_results"]
    assert report["notes"] == []
    assert report["accepted"] == report["completed"] == 120, (report["failed_reasons"], report["refused_reasons"])
