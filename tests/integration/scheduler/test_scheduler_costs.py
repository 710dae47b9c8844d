"""What one task costs the scheduler: journal statements, events and replies (regression guards for
the hot path; the guarantees themselves are covered by test_scheduler_flow.py)."""

from __future__ import annotations

from lama_cleaner.plugins.distributed.wire import protocol as p
from lama_cleaner.tasks import TaskEvent
from tests.integration.scheduler.peers import (
    dispatch,
    expect_completed_event,
    ready_node,
    run_task,
    wait_completed,
    watching_producer,
)
from tests.support.waiting import wait_for

STATEMENT_BUDGET = 24
"""Statements for submit + dispatch + result + fetch of one task, transactions included (it was
~42 before the live index; about 18 now)."""


def test_one_task_stays_within_the_statement_budget_and_rereads_no_row(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = watching_producer(peers, sched)
    node = ready_node(peers, sched)
    warm = run_task(producer, node, "cv2")  # first task: one-off statements (e.g. caches) happen here
    wait_completed(producer, warm["id"], "warm-up task completed")
    node.ready()

    statements: list[str] = []
    sched.store._db.set_trace_callback(statements.append)
    try:
        task, sent = dispatch(producer, node, "cv2")
        node.result(sent, body=b"OUT")
        expect_completed_event(producer, task["id"])
        out = producer.request(p.FETCH, {"task_id": task["id"]})
        assert out.blob_map() == {"body": b"OUT"}
    finally:
        sched.store._db.set_trace_callback(None)
    writes = [s for s in statements if not s.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]
    assert len(statements) <= STATEMENT_BUDGET, statements
    # Live tasks are served from memory: no full row is read back, and no journal-wide count runs.
    assert not [s for s in statements if s.startswith("SELECT seq,")], writes
    assert not [s for s in statements if "COUNT(" in s], writes


def test_progress_events_without_the_redundant_final_one(scheduler_factory, peers):
    seen: list[TaskEvent] = []
    sched = scheduler_factory()
    sched.on_event = seen.append
    producer = watching_producer(peers, sched)
    node = ready_node(peers, sched)
    task, sent = dispatch(producer, node, "cv2")
    for percent, step in ((50.0, 1), (100.0, 2), (100.0, None)):
        node.control.send(p.PROGRESS, {"node_id": node.node_id, "task_id": task["id"], "attempt": 1,
                                       "percent": percent, "step": step, "total_steps": 2})  # fmt: skip
    node.result(sent)
    events: list[dict] = []

    def until_completed() -> bool:
        while (ev := producer.take(p.EVENT, lambda m: m.header["task_id"] == task["id"])) is not None:
            events.append(ev.header)
        return bool(events) and events[-1]["status"] == "completed"

    wait_for(until_completed, message="completed event")
    # A step's progress is forwarded (the UI shows steps); a bare "100 %" right before the
    # result says nothing the completed event does not.
    assert [(e["status"], e["progress"], e["step"]) for e in events] == [
        ("queued", None, None),
        ("processing", 0.0, None),
        ("processing", 50.0, 1),
        ("processing", 100.0, 2),
        ("completed", 100.0, None),
    ]
    assert set(events[0]) == set(TaskEvent.__dataclass_fields__)
    wait_for(lambda: len(seen) == 5, message="in-process observer got every event")
    assert all(isinstance(e, TaskEvent) for e in seen) and seen[-1].status == "completed"


def test_stats_are_fresh_on_the_first_call(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = watching_producer(peers, sched)
    node = ready_node(peers, sched)
    task = run_task(producer, node, "cv2")
    expect_completed_event(producer, task["id"])
    stats = sched.stats()  # no polling: computed by the loop on request
    assert stats["tasks"]["completed"] == 1 and stats["completed"] == 1
    assert stats["queues"]["cpu"]["queued"] == 0 and stats["nodes"]["idle"] == 1
