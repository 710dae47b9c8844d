"""A task's path at INFO, written from its lifecycle events (the ``task_event`` hook).

Accepted, started on a node (with the queue wait), retried, re-queued, completed (with the run time),
failed (with the error), cancelled: one line each, named ``lama_cleaner.tasks``, every line carrying the
task's id, queue, node and attempt. Progress events only update what is remembered about the task. Where
the lines go is a :class:`~.path_lines.PathLines`: loguru directly once the monitor set it up, else the
standard library. A line below the destination's level is not even formatted, nor is a routine one
(accepted, first start, completed) that a flood of tasks would push past the process's line budget
(``line_budget.py``); re-queues, retries, cancellations and failures are always written.

The observer runs wherever task events are seen (the web server, the scheduler's process). It remembers
the tasks in flight only, and at most ``max_tracked`` of them (the oldest are forgotten first), so a flood
of tasks cannot grow its memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from .path_lines import PathLines, StandardLines

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

    def __init__(
        self, lines: PathLines | None = None, max_tracked: int = MAX_TRACKED, level: int = logging.INFO
    ) -> None:
        self.lines: PathLines = lines or StandardLines()
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
            if self.lines.enabled(self.level):
                self.lines.write(
                    self.level,
                    f"task accepted: {event.kind} {event.name} on queue {event.queue}",
                    self._context(event),
                )
            return
        if seen.started_at is not None:  # it ran, and is back in its queue
            if self.lines.enabled(self.level, routine=False):
                reason = f": {event.error}" if event.error else ""
                self.lines.write(
                    self.level,
                    f"task re-queued after attempt {seen.attempt} on node {seen.node or '?'}{reason}",
                    self._context(event, node=seen.node, attempt=seen.attempt),
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
        if not self.lines.enabled(self.level, routine=not retried):
            return
        waited = event.at - seen.accepted_at
        if retried:
            node = event.node or "?"
            message = f"task retried: attempt {attempt} started on node {node}, {waited:.3f} s after it was accepted"
        else:
            message = f"task started on node {event.node or '?'} after waiting {waited:.3f} s"
        self.lines.write(self.level, message, self._context(event, attempt=attempt))

    def _finished(self, event: TaskEventLike, seen: _InFlight | None) -> None:
        level = logging.WARNING if event.status == "failed" else self.level
        if not self.lines.enabled(level, routine=event.status == "completed"):
            return
        node = event.node or (seen.node if seen else None)
        attempt = event.attempts or (seen.attempt if seen else 0)
        total = f"{event.at - seen.accepted_at:.3f} s" if seen else "unknown time"
        if event.status == "completed":
            ran = f"{event.at - seen.started_at:.3f} s" if seen and seen.started_at is not None else "unknown time"
            message = f"task completed on node {node or '?'} in {ran} ({total} since accepted)"
        elif event.status == "failed":
            message = f"task failed after {attempt} attempt(s): {event.error or 'no error message'}"
        else:
            message = f"task cancelled after {total}"
        self.lines.write(level, message, self._context(event, node=node, attempt=attempt))
