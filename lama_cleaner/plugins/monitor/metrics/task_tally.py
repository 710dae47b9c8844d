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
        self._window: deque[TaskSampleLike] = deque(maxlen=WINDOW_CAP)
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
        self._window.append(sample)
        if sample.status == "failed":
            self.failures.append(sample)

    def finished_by_status(self) -> dict[str, int]:
        """Totals per final status (every status present, 0 where none)."""
        totals = dict.fromkeys(FINISHED_STATUSES, 0)
        for (_, _, _, status), n in self.finished.items():
            totals[status] = totals.get(status, 0) + n
        return totals

    def window(self, now: float, min_tasks: int) -> list[WindowFigures]:
        """Figures over the window ending at ``now``: one entry for all queues, then one per queue."""
        while self._window and self._window[0].finished_at < now - self.window_s:
            self._window.popleft()
        samples = [s for s in self._window if s.finished_at <= now]
        by_queue: dict[str, list[TaskSampleLike]] = {}
        for sample in samples:
            by_queue.setdefault(sample.queue, []).append(sample)
        figures = [_figures(None, samples, min_tasks)]
        figures.extend(_figures(queue, by_queue[queue], min_tasks) for queue in sorted(by_queue))
        return figures


def _figures(queue: str | None, samples: list[TaskSampleLike], min_tasks: int) -> WindowFigures:
    completed = sum(1 for s in samples if s.status == "completed")
    failed = sum(1 for s in samples if s.status == "failed")
    cancelled = sum(1 for s in samples if s.status == "cancelled")
    enough = len(samples) >= max(1, min_tasks)
    judged = completed + failed  # a cancellation says nothing about whether the work succeeds
    waits = sorted(s.wait_s for s in samples if s.wait_s is not None)
    runs = sorted(s.run_s for s in samples if s.run_s is not None and s.status == "completed")
    return WindowFigures(
        queue=queue,
        count=len(samples),
        completed=completed,
        failed=failed,
        cancelled=cancelled,
        failure_ratio=(failed / judged) if enough and judged else None,
        wait_p50_s=percentile(waits, 0.5) if enough else None,
        wait_p95_s=percentile(waits, 0.95) if enough else None,
        run_p50_s=percentile(runs, 0.5) if enough else None,
        run_p95_s=percentile(runs, 0.95) if enough else None,
    )


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (a value that occurred, never an interpolation)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(round(len(ordered) * q, 9)))  # rounded first: 0.95 * 60 is 57.00000000000001
    return float(ordered[rank - 1])
