"""A task's path at INFO, written from its lifecycle events (the ``task_event`` hook).

Accepted, started on a node (with the queue wait), retried, re-queued, completed (with the run time),
failed (with the error), cancelled: one line each, on the logger ``lama_cleaner.tasks``, every line carrying
the task's id, queue, node and attempt. Progress events only update what is remembered about the task.

The observer runs wherever task events are seen (the web server, the scheduler's process). It remembers
the tasks in flight only, and at most ``max_tracked`` of them (the oldest are forgotten first), so a flood
of tasks cannot grow its memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("lama_cleaner.tasks")

MAX_TRACKED = 10_000


class TaskEventLike(Protocol):
    """The fields of ``lama_cleaner.tasks.TaskEvent`` this observer reads."""

    task_id: str
    status: str
    kind: str
    name: str
    queue: str | None
    node: str | None
    error: str | None
    attempts: int
    at: float


@dataclass
class _InFlight:
    accepted_at: float
    attempt: int = 0
    started_at: float | None = None
    node: str | None = None


class TaskPathLogger:
    """Call :meth:`observe` with every task event, in order."""

    def __init__(self, logger: logging.Logger = log, max_tracked: int = MAX_TRACKED, level: int = logging.INFO) -> None:
        self.log = logger
        self.level = level
        """The level of every line but a failure's (always WARNING)."""
        self.max_tracked = max_tracked
        self._tasks: OrderedDict[str, _InFlight] = OrderedDict()

    def observe(self, event: TaskEventLike) -> None:
        seen = self._tasks.get(event.task_id)
        status = event.status
        if status == "queued":
            self._queued(event, seen)
        elif status == "processing":
            self._processing(event, seen)
        elif status in ("completed", "failed", "cancelled"):
            self._finished(event, self._tasks.pop(event.task_id, None))

    def _context(self, event: TaskEventLike, node: str | None = None, attempt: int | None = None) -> dict[str, object]:
        context: dict[str, object] = {"task_id": event.task_id}
        if event.queue:
            context["queue"] = event.queue
        node = node or event.node
        if node:
            context["node"] = node
        attempt = attempt if attempt is not None else event.attempts
        if attempt:
            context["attempt"] = attempt
        return context

    def _remember(self, task_id: str, state: _InFlight) -> None:
        self._tasks[task_id] = state
        self._tasks.move_to_end(task_id)
        while len(self._tasks) > self.max_tracked:
            self._tasks.popitem(last=False)

    def _queued(self, event: TaskEventLike, seen: _InFlight | None) -> None:
        if seen is None:
            self._remember(event.task_id, _InFlight(accepted_at=event.at))
            self.log.log(
                self.level,
                "task accepted: %s %s on queue %s",
                event.kind,
                event.name,
                event.queue,
                extra=self._context(event),
            )
            return
        if seen.started_at is not None:  # it ran, and is back in its queue
            reason = f": {event.error}" if event.error else ""
            self.log.log(
                self.level,
                "task re-queued after attempt %d on node %s%s",
                seen.attempt,
                seen.node or "?",
                reason,
                extra=self._context(event, node=seen.node, attempt=seen.attempt),
            )
            seen.started_at = None

    def _processing(self, event: TaskEventLike, seen: _InFlight | None) -> None:
        if seen is None:  # accepted before this observer started: start counting from here
            seen = _InFlight(accepted_at=event.at)
            self._remember(event.task_id, seen)
        attempt = max(event.attempts, 1)
        if seen.started_at is not None and attempt <= seen.attempt:
            return  # a progress report of the attempt already logged
        retried = seen.attempt > 0
        seen.attempt, seen.started_at, seen.node = attempt, event.at, event.node
        waited = event.at - seen.accepted_at
        context = self._context(event, attempt=attempt)
        if retried:
            self.log.log(
                self.level,
                "task retried: attempt %d started on node %s, %.3f s after it was accepted",
                attempt,
                event.node or "?",
                waited,
                extra=context,
            )
        else:
            self.log.log(
                self.level, "task started on node %s after waiting %.3f s", event.node or "?", waited, extra=context
            )

    def _finished(self, event: TaskEventLike, seen: _InFlight | None) -> None:
        node = event.node or (seen.node if seen else None)
        attempt = event.attempts or (seen.attempt if seen else 0)
        context = self._context(event, node=node, attempt=attempt)
        total = f"{event.at - seen.accepted_at:.3f} s" if seen else "unknown time"
        if event.status == "completed":
            ran = f"{event.at - seen.started_at:.3f} s" if seen and seen.started_at is not None else "unknown time"
            self.log.log(
                self.level,
                "task completed on node %s in %s (%s since accepted)",
                node or "?",
                ran,
                total,
                extra=context,
            )
        elif event.status == "failed":
            self.log.warning(
                "task failed after %d attempt(s): %s", attempt, event.error or "no error message", extra=context
            )
        else:
            self.log.log(self.level, "task cancelled after %s", total, extra=context)
