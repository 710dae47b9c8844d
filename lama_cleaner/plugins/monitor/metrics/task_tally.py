"""Finished-task samples -> counts by status, wait/run histograms and a sliding window for percentiles.

The scheduler keeps a short list of recently finished tasks (``SchedulerStats.recent``); every read of the
metrics sees it again. A sample must be counted once however often it is read, so the tally remembers the
task ids of the previous list only: the list is a sliding window (a sample that left it never comes back),
so that is enough to tell new samples from old ones, and memory stays the size of the list.

If more tasks finish between two reads than the list holds, the overflow is not in any list we see; the
scheduler's own finished counters still include it, so the difference is counted as missed instead of
being silently lost.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .histograms import HistogramSet
from .snapshot import FINISHED_STATUSES, TaskSampleLike

FinishedKey = tuple[str, str, str, str]  # queue, kind, model, status

WINDOW_CAP = 10_000
"""Samples the percentile window holds at most, whatever ``window_s`` says (bounded memory)."""

FAILURES_KEPT = 20
"""Recent failures kept for the dashboard."""


@dataclass(frozen=True)
class WindowFigures:
    """Figures over the samples that finished within the window (one queue, or ``queue=None`` for all)."""

    queue: str | None
    count: int
    completed: int
    failed: int
    cancelled: int
    failure_ratio: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None
    run_p50_s: float | None
    run_p95_s: float | None


class TaskTally:
    """Counts finished tasks once each; not thread-safe (the metrics hub serialises its calls)."""

    def __init__(self, buckets: Sequence[float], window_s: float) -> None:
        self.window_s = window_s
        self.finished: dict[FinishedKey, int] = {}
        self.wait = HistogramSet(buckets)
        self.run = HistogramSet(buckets)
        self.samples_missed = 0
        self.failures: deque[TaskSampleLike] = deque(maxlen=FAILURES_KEPT)
        self._window: deque[TaskSampleLike] = deque()  # oldest first; at most WINDOW_CAP
        self._groups: dict[str | None, _Group] = {}  # None: every queue
        self._previous_ids: frozenset[str] = frozenset()
        self._finished_baseline: int | None = None

    def ingest(self, recent: Sequence[TaskSampleLike], counters: Mapping[str, int]) -> int:
        """Count the samples of ``recent`` not seen in the previous list; return how many were new."""
        new = [s for s in recent if s.task_id not in self._previous_ids]
        self._previous_ids = frozenset(s.task_id for s in recent)
        for sample in sorted(new, key=lambda s: s.finished_at):
            self.observe(sample)
        self._count_missed(len(new), sum(int(counters.get(status, 0)) for status in FINISHED_STATUSES))
        return len(new)

    def _count_missed(self, new: int, finished: int) -> None:
        # The first read (or a scheduler restart, which resets its counters) only sets the baseline: what
        # finished before we started reading is not ours to call missed.
        if self._finished_baseline is None or finished < self._finished_baseline:
            self._finished_baseline = finished
            return
        self.samples_missed += max(0, finished - self._finished_baseline - new)
        self._finished_baseline = finished

    def observe(self, sample: TaskSampleLike) -> None:
        """Count one finished task (also usable directly by an observer that sees every task finish)."""
        key = (sample.queue, sample.kind, sample.name, sample.status)
        self.finished[key] = self.finished.get(key, 0) + 1
        series = (sample.queue, sample.name)
        if sample.wait_s is not None:
            self.wait.observe(series, sample.wait_s)
        if sample.run_s is not None:
            self.run.observe(series, sample.run_s)
        self._remember(sample)
        if sample.status == "failed":
            self.failures.append(sample)

    def finished_by_status(self) -> dict[str, int]:
        """Totals per final status (every status present, 0 where none)."""
        totals = dict.fromkeys(FINISHED_STATUSES, 0)
        for (_, _, _, status), n in self.finished.items():
            totals[status] = totals.get(status, 0) + n
        return totals

    def window(self, now: float, min_tasks: int) -> list[WindowFigures]:
        """Figures over the window ending at ``now``: one entry for all queues, then one per queue.

        Read on every scrape and alert evaluation. The groups are kept up to date as samples come and go
        (counts, and sorted lists kept sorted with ``insort``), so a read costs a few lookups however full the
        window is: recomputing them from up to :data:`WINDOW_CAP` samples cost ~8 ms a read."""
        cutoff = now - self.window_s
        while self._window and self._window[0].finished_at < cutoff:
            self._forget(self._window.popleft())
        groups = self._groups
        figures = [groups[None].figures(None, min_tasks) if None in groups else _Group().figures(None, min_tasks)]
        figures.extend(groups[q].figures(q, min_tasks) for q in sorted(q for q in groups if q is not None))
        return figures

    def _remember(self, sample: TaskSampleLike) -> None:
        if len(self._window) >= WINDOW_CAP:
            self._forget(self._window.popleft())
        self._window.append(sample)
        for key in (None, sample.queue):
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group()
            group.add(sample)

    def _forget(self, sample: TaskSampleLike) -> None:
        for key in (None, sample.queue):
            group = self._groups.get(key)
            if group is not None and group.remove(sample) == 0 and key is not None:
                del self._groups[key]  # a queue with nothing in the window leaves the figures


class _Group:
    """The window's figures for one group of samples (all queues, or one), kept as samples come and go."""

    __slots__ = ("count", "completed", "failed", "cancelled", "waits", "runs")

    def __init__(self) -> None:
        self.count = self.completed = self.failed = self.cancelled = 0
        self.waits: list[float] = []  # sorted
        self.runs: list[float] = []  # sorted; completed tasks only: a failure's run time is not the work's

    def add(self, sample: TaskSampleLike) -> None:
        self.count += 1
        self._tally(sample.status, 1)
        if sample.wait_s is not None:
            insort(self.waits, sample.wait_s)
        if sample.status == "completed" and sample.run_s is not None:
            insort(self.runs, sample.run_s)

    def remove(self, sample: TaskSampleLike) -> int:
        """Take ``sample`` out (it was added); returns how many samples are left."""
        self.count -= 1
        self._tally(sample.status, -1)
        if sample.wait_s is not None:
            _discard(self.waits, sample.wait_s)
        if sample.status == "completed" and sample.run_s is not None:
            _discard(self.runs, sample.run_s)
        return self.count

    def _tally(self, status: str, step: int) -> None:
        if status == "completed":
            self.completed += step
        elif status == "failed":
            self.failed += step
        elif status == "cancelled":
            self.cancelled += step

    def figures(self, queue: str | None, min_tasks: int) -> WindowFigures:
        enough = self.count >= max(1, min_tasks)
        judged = self.completed + self.failed  # a cancellation says nothing about whether the work succeeds
        return WindowFigures(
            queue=queue,
            count=self.count,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            failure_ratio=(self.failed / judged) if enough and judged else None,
            wait_p50_s=percentile(self.waits, 0.5) if enough else None,
            wait_p95_s=percentile(self.waits, 0.95) if enough else None,
            run_p50_s=percentile(self.runs, 0.5) if enough else None,
            run_p95_s=percentile(self.runs, 0.95) if enough else None,
        )


def _discard(ordered: list[float], value: float) -> None:
    index = bisect_left(ordered, value)
    if index < len(ordered) and ordered[index] == value:
        del ordered[index]


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (a value that occurred, never an interpolation)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(round(len(ordered) * q, 9)))  # rounded first: 0.95 * 60 is 57.00000000000001
    return float(ordered[rank - 1])
