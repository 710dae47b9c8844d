"""Cumulative histograms keyed by label values, cheap enough to feed from every HTTP request.

prometheus-client's own ``Histogram`` would do, but the same figures must also come out as JSON and feed
percentiles for the dashboard, and the set of label values is known only as work arrives. One lock, one
``bisect`` and two additions per observation; the cumulative sums are built only when someone reads them.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

LabelValues = tuple[str, ...]


@dataclass(frozen=True)
class HistogramReading:
    """One series, read: ``buckets`` are ``(upper bound, cumulative count)`` pairs ending with +Inf."""

    labels: LabelValues
    buckets: tuple[tuple[float, int], ...]
    total: float
    count: int


class HistogramSet:
    """Histograms sharing one set of bucket bounds, one per label-value tuple."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds: tuple[float, ...] = tuple(float(b) for b in bounds)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def observe(self, labels: LabelValues, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is >= it (Prometheus's ``le``)."""
        index = bisect_left(self.bounds, value)  # len(bounds) = the +Inf bucket
        with self._lock:
            counts = self._counts.get(labels)
            if counts is None:
                counts = self._counts[labels] = [0] * (len(self.bounds) + 1)
                self._sums[labels] = 0.0
            counts[index] += 1
            self._sums[labels] += value

    def read(self) -> list[HistogramReading]:
        """Every series, sorted by labels, with cumulative bucket counts."""
        with self._lock:
            raw = [(labels, list(counts), self._sums[labels]) for labels, counts in self._counts.items()]
        readings = []
        for labels, counts, total in sorted(raw):
            running, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                running += n
                buckets.append((bound, running))
            readings.append(HistogramReading(labels, tuple(buckets), total, running))
        return readings
