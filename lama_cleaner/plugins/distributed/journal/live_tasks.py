"""In-memory index of the journal's unfinished tasks, so the scheduler's hot paths never re-read rows.

Why: every task is read many times while it is alive (submit, position, dispatch, progress,
result) and the dispatcher looks for runnable tasks every loop round. Reading those rows back from
SQLite (and re-parsing their JSON) was most of the scheduler's CPU per task. The journal stays the
source of truth: :class:`~.task_store.TaskStore` loads this index from it when it opens and keeps it
in step with every write it makes (it is the only writer), and rolls it back with the transaction.

What it holds:

- every queued or processing task's current :class:`~.records.TaskRecord` (records are values:
  a change makes a new record, so one handed out never changes under its holder);
- per queue, the queued tasks in dispatch order: highest ``priority`` first, then FIFO by ``seq``
  (a sorted list of ``(-priority, seq, id)`` keys): the dispatcher's candidates and positions;
- the queued tasks waiting for a retry backoff (``not_before``), for the loop's next wake-up;
- a bounded cache of recently finished records (GET/FETCH right after completion, late duplicates).

Undo log: while a transaction is open every change records the previous record of the task, so a
rolled-back savepoint or transaction restores exactly the index that matches the journal again.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from . import states
from .records import TaskRecord

RECENT_FINISHED = 1024
"""Finished records kept in memory; older ones are read from the journal on demand."""

QueueKey = tuple[int, int, str]
"""``(-priority, seq, id)``: sorting these gives a queue's dispatch order."""


def queue_key(rec: TaskRecord) -> QueueKey:
    """Where ``rec`` stands in its queue: priority first (negated: higher sorts first), then FIFO."""
    return (-rec.priority, rec.seq, rec.id)


class LiveTasks:
    """The index (see the module docstring). Not thread-safe: the store's thread owns it."""

    def __init__(self, recent_limit: int = RECENT_FINISHED) -> None:
        self.records: dict[str, TaskRecord] = {}
        self._queued: dict[str, list[QueueKey]] = {}
        self._processing: dict[str, int] = {}
        self._delayed: dict[str, float] = {}
        self._recent: OrderedDict[str, TaskRecord] = OrderedDict()
        self._recent_limit = max(0, int(recent_limit))
        self._undo: list[tuple[str, TaskRecord | None]] | None = None

    # ------------------------------------------------------------ reading
    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record if it is unfinished or finished recently; None means "ask the journal"."""
        rec = self.records.get(task_id)
        if rec is None:
            rec = self._recent.get(task_id)
        return rec

    def unfinished(self) -> list[TaskRecord]:
        return sorted(self.records.values(), key=lambda r: r.seq)

    def position(self, rec: TaskRecord) -> int | None:
        """0-based place of a queued task in its queue's dispatch order (priority, then FIFO by
        submission; delayed ones included): how many queued tasks of that queue go before it."""
        if rec.status != states.QUEUED:
            return None
        return bisect_left(self._queued.get(rec.queue, ()), queue_key(rec))

    def queued_count(self, queue: str | None = None) -> int:
        if queue is None:
            return sum(len(q) for q in self._queued.values())
        return len(self._queued.get(queue, ()))

    def processing_count(self, queue: str) -> int:
        return self._processing.get(queue, 0)

    def next_wakeup(self, now: float) -> float | None:
        """The earliest ``not_before`` still in the future among queued tasks (a retry coming due)."""
        future = [t for t in self._delayed.values() if t > now]
        return min(future) if future else None

    def runnable(self, now: float, queues: Iterable[str] | None = None) -> Iterator[TaskRecord]:
        """Queued tasks of ``queues`` (default: every queue) whose retry delay has passed, in dispatch
        order (highest priority first, then oldest first; queues merged by the same key), lazily: the
        caller stops as soon as it has enough, so a long queue costs nothing per round."""
        wanted = self._queued if queues is None else queues
        lists = [self._queued[q] for q in wanted if self._queued.get(q)]
        if not lists:
            return
        merged = lists[0] if len(lists) == 1 else heapq.merge(*lists)
        delayed = self._delayed
        records = self.records
        for _, _, task_id in merged:
            due = delayed.get(task_id)
            if due is not None and due > now:
                continue
            yield records[task_id]

    # ------------------------------------------------------------ changing
    def put(self, rec: TaskRecord) -> None:
        """Make ``rec`` the task's current record (new task, state change, or new field values)."""
        old = self.records.get(rec.id) or self._recent.get(rec.id)
        if self._undo is not None:
            self._undo.append((rec.id, old))
        if old is not None:
            self._remove(old)
        self._insert(rec)

    def forget(self, task_id: str) -> None:
        """Drop a task (pruned from the journal)."""
        old = self.records.get(task_id) or self._recent.get(task_id)
        if old is None:
            return
        if self._undo is not None:
            self._undo.append((task_id, old))
        self._remove(old)

    def _insert(self, rec: TaskRecord) -> None:
        if rec.status in states.TERMINAL:
            if self._recent_limit:
                self._recent[rec.id] = rec
                while len(self._recent) > self._recent_limit:
                    self._recent.popitem(last=False)  # the journal still has it
            return
        self.records[rec.id] = rec
        if rec.status == states.QUEUED:
            insort(self._queued.setdefault(rec.queue, []), queue_key(rec))
            if rec.not_before > 0:
                self._delayed[rec.id] = rec.not_before
        else:
            self._processing[rec.queue] = self._processing.get(rec.queue, 0) + 1

    def _remove(self, rec: TaskRecord) -> None:
        if rec.status in states.TERMINAL:
            self._recent.pop(rec.id, None)
            return
        self.records.pop(rec.id, None)
        if rec.status == states.QUEUED:
            line = self._queued.get(rec.queue)
            if line:
                i = bisect_left(line, queue_key(rec))
                if i < len(line) and line[i][2] == rec.id:
                    del line[i]
            self._delayed.pop(rec.id, None)
        else:
            self._processing[rec.queue] = max(0, self._processing.get(rec.queue, 0) - 1)

    # ------------------------------------------------------------ transactions
    def begin(self) -> None:
        """Start recording changes (a journal transaction opened)."""
        self._undo = []

    def mark(self) -> int:
        return len(self._undo) if self._undo is not None else 0

    def rollback_to(self, mark: int) -> None:
        """Undo the changes recorded after ``mark`` (newest first)."""
        if self._undo is None:
            return
        while len(self._undo) > mark:
            task_id, old = self._undo.pop()
            current = self.records.get(task_id) or self._recent.get(task_id)
            if current is not None:
                self._remove(current)
            if old is not None:
                self._insert(old)

    def end(self) -> None:
        """Stop recording (the transaction committed or was rolled back)."""
        self._undo = None
