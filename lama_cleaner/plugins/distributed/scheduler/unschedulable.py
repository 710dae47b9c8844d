"""Queued tasks that no online node can run: reported once (``task_unschedulable``), counted per
queue (``QueueStats.unschedulable``), and failed after ``unschedulable_timeout_s`` (when above 0).

Without the failing, a task nobody can run (no nodes, none granted its queue, none offering its
model or plugin) is skipped by dispatch forever and a waiting ``/inpaint`` ends in a 504 after
``request_timeout_s``. The decision itself is :func:`.routing.unschedulable_reason`; this module
keeps the clocks and the once-per-task reports.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..journal import states
from ..journal.records import TaskRecord
from .event_publishing import EventPublisher
from .node_registry import NodeEntry
from .routing import IdleNode, WaitingTask, node_can_run, unschedulable_reason
from .scheduler_state import SchedulerState

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

UNSCHEDULABLE_CHECK_S = 1.0
"""How often (at most) queued tasks are checked for having no node that could ever run them."""

TaskKey = tuple[str, str, str]
"""``(queue, kind, name)``: what decides which nodes can run a task."""


class UnschedulableWatch:
    """The periodic check, with what it remembers between runs."""

    def __init__(self, state: SchedulerState, events: EventPublisher) -> None:
        self.state = state
        self.events = events
        self.started_at = 0.0
        """When the scheduler started (nodes re-register after a restart: a task's clock starts no earlier)."""
        self.next_check = 0.0
        self.stuck: dict[str, str] = {}
        """Queued task id -> queue, for the tasks no online node could run at the last check."""
        self._last_eligible: dict[TaskKey, float] = {}  # last moment some online node could run such a task
        self._reported: set[str] = set()  # tasks task_unschedulable was fired for

    def check(self, now: float) -> None:
        """Find queued tasks that no online node can run, report and count them, and fail those stuck
        too long. The clock of a task starts at the later of its submission, the scheduler's start
        and the last moment a node that could run it was online. Runs at most once a second and
        costs one pass over the unfinished tasks."""
        timeout = float(self.state.dcfg.unschedulable_timeout_s)
        if now < self.next_check:
            return
        period = min(UNSCHEDULABLE_CHECK_S, max(0.05, timeout / 4)) if timeout > 0 else UNSCHEDULABLE_CHECK_S
        self.next_check = now + period
        store = self.state.journal()
        waiting: dict[TaskKey, list[TaskRecord]] = {}
        running: set[TaskKey] = set()
        for rec in store.live.records.values():
            key = (rec.queue, rec.kind, rec.name)
            if rec.status == states.QUEUED:
                waiting.setdefault(key, []).append(rec)
            else:
                running.add(key)  # a node runs one right now, so one could run the others
        last = self._last_eligible
        for gone in [k for k in last if k not in waiting and k not in running]:
            del last[gone]
        for key in running:
            last[key] = now
        stuck: dict[str, str] = {}
        if waiting:
            online, draining, offline = node_views(self.state.nodes.values())
            for key, recs in waiting.items():
                task = WaitingTask("", key[1], key[2], key[0])
                reason = unschedulable_reason(task, online, draining)
                if reason is None:
                    last[key] = now
                    continue
                failed = self._fail_stuck(key, recs, task, reason, offline, timeout, now) if timeout > 0 else set()
                for rec in recs:
                    if rec.id not in failed:
                        stuck[rec.id] = rec.queue
                        self._report(rec, reason)
        self.stuck = stuck
        reported = self._reported
        if reported:
            live = store.live.records
            self._reported = {t for t in reported if t in live}

    def _report(self, rec: TaskRecord, reason: str) -> None:
        """``task_unschedulable``, once per task (off this thread)."""
        if rec.id in self._reported:
            return
        self._reported.add(rec.id)
        self.events.notify(
            "task_unschedulable", task_id=rec.id, queue=rec.queue, kind=rec.kind, name=rec.name, reason=reason
        )

    def _fail_stuck(
        self,
        key: TaskKey,
        recs: list[TaskRecord],
        task: WaitingTask,
        reason: str,
        offline: list[tuple[IdleNode, float]],
        timeout: float,
        now: float,
    ) -> set[str]:
        """Fail the tasks of ``key`` that waited ``timeout`` with no node able to run them; their ids."""
        last = self._last_eligible
        seen = max([last.get(key, 0.0), self.started_at]
                   + [since for view, since in offline if node_can_run(view, task)])  # fmt: skip
        last[key] = seen
        if now - seen < timeout:
            return set()
        message = f"{reason}; gave up after {timeout:g}s"
        failed = set()
        store = self.state.journal()
        for rec in recs:
            if now - rec.created_at < timeout:
                continue
            log.warning("task %s failed: %s", rec.id, message)
            self.state.counters.count("failed")
            self.events.record(store.fail(rec.id, error=message, status=503, now=now))
            failed.add(rec.id)
        return failed


def node_views(nodes: Iterable[NodeEntry]) -> tuple[list[IdleNode], set[str], list[tuple[IdleNode, float]]]:
    """(online nodes, ids of the draining ones, offline nodes with when they went offline) as
    routing sees them, with ``queues`` = the queues each was granted."""
    online: list[IdleNode] = []
    draining: set[str] = set()
    offline: list[tuple[IdleNode, float]] = []
    for n in nodes:
        view = IdleNode(n.node_id, frozenset(n.allowed), n.idle_since, models=n.models, plugins=n.plugins)
        if n.offline:
            offline.append((view, n.offline_since))
            continue
        online.append(view)
        if n.draining:
            draining.add(n.node_id)
    return online, draining, offline
