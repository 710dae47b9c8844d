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
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .histograms import HistogramSet
from .snapshot import FINISHED_STATUSES, TaskSampleLike

FinishedKey = tuple[str, str, str, str]  # queue, kind, model, status

WINDOW_CAP = 10_000
"""Samples the percentile window is computed from at most, whatever ``window_s`` says (the newest); memory
holds at most twice that between two reads."""

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

        Read on every scrape and alert evaluation. Each group keeps its counts and its wait and run times as
        they arrive (appends), and the samples that left the window are cut off in one slice per list, so a
        read is a C-speed sort of plain floats per figure: computing the figures from the samples themselves
        (attribute reads and generator passes over up to :data:`WINDOW_CAP` of them) cost ~8 ms a read."""
        cutoff = now - self.window_s
        for group in self._groups.values():
            group.expire(cutoff)
        self._cap(WINDOW_CAP)
        figures = [self._groups[None].figures(None, min_tasks) if None in self._groups else _empty_figures(min_tasks)]
        for queue in sorted(q for q in self._groups if q is not None):
            group = self._groups[queue]
            if group.count:
                figures.append(group.figures(queue, min_tasks))
            else:
                del self._groups[queue]  # a queue with nothing in the window leaves the figures
        return figures

    def _cap(self, limit: int) -> None:
        """Keep at most ``limit`` samples: the newest (cut at a finish time, so every group loses the same)."""
        everything = self._groups.get(None)
        if everything is not None and everything.count > limit:
            cutoff = everything.finished_at(everything.count - limit - 1)
            for group in self._groups.values():
                group.expire(cutoff, inclusive=True)

    def _remember(self, sample: TaskSampleLike) -> None:
        everything = self._groups.get(None)
        if everything is not None and everything.count >= 2 * WINDOW_CAP:
            self._cap(WINDOW_CAP)  # bounded memory without a read; trimmed in bulk, not a sample at a time
        for key in (None, sample.queue):
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group()
            group.add(sample)


class _Group:
    """One group's samples in the window (all queues, or one), as parallel lists in arrival order.

    ``_at`` holds each sample's finish time and status; ``_waits``/``_runs`` the values with their finish time,
    so expiring is a bisect and a slice. Samples arrive in finish order (the tally sorts each batch), which
    is what makes the bisect valid; one that arrives out of order is at worst kept a little longer."""

    __slots__ = ("_at", "_statuses", "_waits", "_wait_at", "_runs", "_run_at")

    def __init__(self) -> None:
        self._at: list[float] = []
        self._statuses: list[str] = []
        self._waits: list[float] = []
        self._wait_at: list[float] = []
        self._runs: list[float] = []  # completed tasks only: a failure's run time is not the work's
        self._run_at: list[float] = []

    @property
    def count(self) -> int:
        return len(self._at)

    def finished_at(self, index: int) -> float:
        return self._at[index]

    def add(self, sample: TaskSampleLike) -> None:
        at = sample.finished_at
        self._at.append(at)
        self._statuses.append(sample.status)
        if sample.wait_s is not None:
            self._waits.append(sample.wait_s)
            self._wait_at.append(at)
        if sample.status == "completed" and sample.run_s is not None:
            self._runs.append(sample.run_s)
            self._run_at.append(at)

    def expire(self, cutoff: float, *, inclusive: bool = False) -> None:
        """Drop the samples that finished before ``cutoff`` (``inclusive``: at it too)."""
        cut = bisect_right if inclusive else bisect_left
        n = cut(self._at, cutoff)
        if n:
            del self._at[:n], self._statuses[:n]
        n = cut(self._wait_at, cutoff)
        if n:
            del self._waits[:n], self._wait_at[:n]
        n = cut(self._run_at, cutoff)
        if n:
            del self._runs[:n], self._run_at[:n]

    def figures(self, queue: str | None, min_tasks: int) -> WindowFigures:
        statuses = self._statuses
        completed, failed, cancelled = (statuses.count(s) for s in ("completed", "failed", "cancelled"))
        enough = len(statuses) >= max(1, min_tasks)
        judged = completed + failed  # a cancellation says nothing about whether the work succeeds
        waits = sorted(self._waits) if enough else []
        runs = sorted(self._runs) if enough else []
        return WindowFigures(
            queue=queue,
            count=len(statuses),
            completed=completed,
            failed=failed,
            cancelled=cancelled,
            failure_ratio=(failed / judged) if enough and judged else None,
            wait_p50_s=percentile(waits, 0.5) if enough else None,
            wait_p95_s=percentile(waits, 0.95) if enough else None,
            run_p50_s=percentile(runs, 0.5) if enough else None,
            run_p95_s=percentile(runs, 0.95) if enough else None,
        )


def _empty_figures(min_tasks: int) -> WindowFigures:
    """The all-queues entry when nothing finished yet."""
    return _Group().figures(None, min_tasks)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (a value that occurred, never an interpolation)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(round(len(ordered) * q, 9)))  # rounded first: 0.95 * 60 is 57.00000000000001
    return float(ordered[rank - 1])
