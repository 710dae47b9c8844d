"""The chaos soak's verdict must see what it exists to catch, and its fault plan must be reproducible.

A soak that reports zero because it cannot count is worse than none: each violation is fed to
``verdict`` here by hand (a key with two tasks, a task missing from the journal, a wrong image, a
task never seen final, a result that changed afterwards) and must be counted and fail the run.
"""

from __future__ import annotations

import pytest

from tests.support.chaos.clients import Ledger
from tests.support.chaos.faults import LINK_CUT, NODE_KILL, SERVER_KILL, Fault, FaultRecord, plan_faults
from tests.support.chaos.verdict import JournalRow, format_report, verdict
from tests.support.chaos.workload import TaskSpec, result_digest


def _done(index: int, task_id: str) -> Ledger:
    spec = TaskSpec(3, index)
    return Ledger(spec, task_ids=[task_id], status="completed", digest=spec.expected_digest)


def _row(task_id: str, index: int, finished_at: float = 100.0, dispatches: int = 1) -> JournalRow:
    return JournalRow(task_id, TaskSpec(3, index).key, "completed", 1, dispatches, 0, 0, finished_at)


def _report(ledgers: list[Ledger], rows: list[JournalRow], faults: list[FaultRecord] = ()) -> dict:
    return verdict(ledgers, rows, faults, wall_s=10.0, posts_before_recheck={})


def test_a_clean_run_is_ok_and_counts_hidden_re_executions_without_failing():
    report = _report([_done(0, "a"), _done(1, "b")], [_row("a", 0), _row("b", 1, dispatches=2)])
    assert (report["lost"], report["delivered_twice"], report["wrong_results"]) == (0, 0, 0)
    assert report["completed"] == 2 and report["executed_more_than_once"] == 1
    assert report["ok"]
    assert "verdict: OK" in format_report(report)


@pytest.mark.parametrize(
    ("damage", "figure"),
    [
        (lambda ls, rows: ls[0].task_ids.append("other"), "delivered_twice"),
        (lambda ls, rows: rows.append(_row("again", 0)), "delivered_twice"),
        (lambda ls, rows: ls[0].problems.append("changed: final state completed became queued"), "delivered_twice"),
        (lambda ls, rows: rows.pop(0), "lost"),
        (lambda ls, rows: setattr(ls[0], "status", "processing"), "lost"),
        (lambda ls, rows: ls[0].problems.append("lost: GET answered 404 for 20s"), "lost"),
        (lambda ls, rows: ls[0].problems.append("wrong: the result image is not the expected one"), "wrong_results"),
    ],
)
def test_each_violation_is_counted_and_fails_the_run(damage, figure):
    ledgers, rows = [_done(0, "a"), _done(1, "b")], [_row("a", 0), _row("b", 1)]
    damage(ledgers, rows)
    report = _report(ledgers, rows)
    assert report[figure] == 1, report["examples"]
    assert not report["ok"]
    assert "verdict: FAILED" in format_report(report)


def test_recovery_is_the_time_from_a_fault_to_the_next_completed_task():
    faults = [FaultRecord(Fault(0.5, SERVER_KILL), fired_at=50.0, restart_s=1.5, undone_at=51.5)]
    report = _report([_done(0, "a"), _done(1, "b")], [_row("a", 0, 49.0), _row("b", 1, 52.25)], faults)
    assert report["faults"][0]["recovery_s"] == 2.25
    assert report["recovery"][SERVER_KILL]["recovery_p50_s"] == 2.25


def test_the_fault_plan_is_reproducible_from_its_seed():
    one = plan_faults(5, nodes=3, server_kills=3, node_kills=4, link_cuts=4)
    assert one == plan_faults(5, nodes=3, server_kills=3, node_kills=4, link_cuts=4)
    assert one != plan_faults(6, nodes=3, server_kills=3, node_kills=4, link_cuts=4)
    assert [f.at for f in one] == sorted(f.at for f in one)
    kinds = [f.kind for f in one]
    assert (kinds.count(SERVER_KILL), kinds.count(NODE_KILL), kinds.count(LINK_CUT)) == (3, 4, 4)


def test_the_oracle_tells_images_apart_and_rejects_garbage():
    first, second = TaskSpec(3, 0), TaskSpec(3, 1)
    assert first.expected_digest != second.expected_digest
    assert result_digest(first.image_png) != first.expected_digest  # the input is not the answer
    assert result_digest(b"not an image") is None


def test_a_classic_request_has_no_task_id_and_is_not_lost_but_its_image_is_checked():
    spec = TaskSpec(3, 9)
    classic = Ledger(spec, status="completed", digest=spec.expected_digest, classic=True, posts=2)
    report = _report([_done(0, "a"), classic], [_row("a", 0)])
    assert (report["lost"], report["classic_requests"], report["classic_completed"]) == (0, 1, 1)
    assert report["classic_retried"] == 1 and report["ok"]
    classic.problems.append("wrong: the /inpaint image is not the expected one")
    assert _report([classic], [])["wrong_results"] == 1
