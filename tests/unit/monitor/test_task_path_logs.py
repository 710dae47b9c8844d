"""A task's path at INFO from its lifecycle events: one line per step, each with the task's context."""

from __future__ import annotations

import logging

import pytest

from lama_cleaner.plugins.monitor.logs.task_path import TaskPathLogger
from lama_cleaner.tasks import TaskEvent


def event(status: str, at: float, **fields) -> TaskEvent:
    return TaskEvent(task_id="t1", status=status, kind="inpaint", name="lama", queue="gpu", at=at, **fields)


def lines(caplog) -> list[tuple[str, str, dict]]:
    out = []
    for r in caplog.records:
        context = {k: getattr(r, k) for k in ("task_id", "queue", "node", "attempt") if hasattr(r, k)}
        out.append((r.levelname, r.getMessage(), context))
    return out


@pytest.fixture
def path(caplog):
    caplog.set_level(logging.INFO, logger="lama_cleaner.tasks")
    return TaskPathLogger()


def test_a_task_that_fails_once_is_retried_and_completes(path, caplog) -> None:
    for e in [
        event("queued", 100.0),
        event("processing", 100.5, node="n1", attempts=1, progress=0.0),
        event("processing", 101.0, node="n1", attempts=1, progress=50.0),  # progress: no line
        event("queued", 102.0, attempts=1, error="node n1 went offline"),
        event("processing", 103.0, node="n2", attempts=2, progress=0.0),
        event("completed", 104.5, node="n2", attempts=2, progress=100.0),
    ]:
        path.observe(e)
    assert lines(caplog) == [
        ("INFO", "task accepted: inpaint lama on queue gpu", {"task_id": "t1", "queue": "gpu"}),
        (
            "INFO",
            "task started on node n1 after waiting 0.500 s",
            {"task_id": "t1", "queue": "gpu", "node": "n1", "attempt": 1},
        ),
        (
            "INFO",
            "task re-queued after attempt 1 on node n1: node n1 went offline",
            {"task_id": "t1", "queue": "gpu", "node": "n1", "attempt": 1},
        ),
        (
            "INFO",
            "task retried: attempt 2 started on node n2, 3.000 s after it was accepted",
            {"task_id": "t1", "queue": "gpu", "node": "n2", "attempt": 2},
        ),
        (
            "INFO",
            "task completed on node n2 in 1.500 s (4.500 s since accepted)",
            {"task_id": "t1", "queue": "gpu", "node": "n2", "attempt": 2},
        ),
    ]


def test_failed_and_cancelled(path, caplog) -> None:
    path.observe(event("queued", 10.0))
    path.observe(event("processing", 11.0, node="n1", attempts=3))
    path.observe(event("failed", 12.0, node="n1", attempts=3, error="CUDA out of memory"))
    other = TaskEvent(task_id="t2", status="queued", queue="cpu", name="cv2", at=20.0)
    path.observe(other)
    path.observe(TaskEvent(task_id="t2", status="cancelled", queue="cpu", name="cv2", at=21.25))
    got = lines(caplog)
    assert got[2] == (
        "WARNING",
        "task failed after 3 attempt(s): CUDA out of memory",
        {"task_id": "t1", "queue": "gpu", "node": "n1", "attempt": 3},
    )
    assert got[-1] == ("INFO", "task cancelled after 1.250 s", {"task_id": "t2", "queue": "cpu"})


def test_memory_is_bounded_and_finished_tasks_are_forgotten(caplog) -> None:
    caplog.set_level(logging.INFO, logger="lama_cleaner.tasks")
    path = TaskPathLogger(max_tracked=3)
    for i in range(10):
        path.observe(TaskEvent(task_id=f"t{i}", status="queued", at=float(i)))
    assert list(path._tasks) == ["t7", "t8", "t9"]
    path.observe(TaskEvent(task_id="t9", status="completed", at=20.0))
    assert list(path._tasks) == ["t7", "t8"]
    # A task it forgot (or never saw accepted) still gets its lines, without the durations it cannot know.
    path.observe(TaskEvent(task_id="t0", status="completed", node="n1", at=30.0))
    assert caplog.records[-1].getMessage() == "task completed on node n1 in unknown time (unknown time since accepted)"
