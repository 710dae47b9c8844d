"""The metrics of one process: where the scheduler's snapshot is read, tallied and turned into figures.

Every consumer (a Prometheus scrape, ``/api/v1/metrics``, the dashboard feed, the alert job) asks the hub
for a reading. Reading the scheduler is not free (it scans its journal), so readings younger than
``min_interval_s`` are shared: ten open dashboards and a scrape cost the scheduler one snapshot a second at
most. All per-event work (HTTP timing, scale decisions) is a dict update; everything else happens when
someone reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from ..config import MonitorConfig
from . import collector
from .history import History, history_point
from .http import HttpMetrics
from .json_view import metrics_document
from .signals import Signal, signals_from
from .snapshot import SchedulerStatsLike
from .task_tally import TaskTally, WindowFigures

log = logging.getLogger(__name__)

StatsSource = Callable[[], SchedulerStatsLike]
AlertsSource = Callable[[], Sequence[dict[str, Any]]]


@dataclass(frozen=True)
class Reading:
    """One read of the scheduler and what was computed from it."""

    time: float
    stats: SchedulerStatsLike | None
    error: str | None
    window: tuple[WindowFigures, ...]
    signals: tuple[Signal, ...]


class MetricsHub:
    """Owns the tally, the HTTP metrics, the history and a Prometheus registry exposing them."""

    def __init__(
        self,
        config: MonitorConfig,
        source: StatsSource | None,
        *,
        clock: Callable[[], float] = time.time,
        min_interval_s: float = 1.0,
        history_step_s: float = 5.0,
        process_metrics: bool = True,
    ) -> None:
        self.config = config
        self.source = source
        self.clock = clock
        self.min_interval_s = min_interval_s
        self.tally = TaskTally(config.task_buckets_s, config.window_s)
        self.http = HttpMetrics(config.http_buckets_s)
        self.history = History(config.history_points, history_step_s)
        self.alerts: AlertsSource = lambda: ()
        self._scale: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()
        self._reading: Reading | None = None
        self._last_error: str | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HubCollector(self))
        if process_metrics:  # CPU, memory, file descriptors, GC and Python version of this process
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    # ------------------------------------------------------------------ recording (cheap, any thread)
    def record_scale_decision(self, action: str, queue: str) -> None:
        """Count one decision of the autoscale plugin (``action``: ``up``, ``down``, ...)."""
        with self._lock:
            key = (action, queue)
            self._scale[key] = self._scale.get(key, 0) + 1

    # ------------------------------------------------------------------ reading
    def read(self) -> Reading:
        """The latest reading, taken anew if the last one is older than ``min_interval_s``."""
        with self._lock:
            if self._reading is not None and self.clock() - self._reading.time < self.min_interval_s:
                return self._reading
            return self.refresh()

    def refresh(self) -> Reading:
        """Read the scheduler now, count the new finished tasks, remember a history point."""
        with self._lock:
            now = self.clock()
            stats, error = self._snapshot()
            if stats is not None:
                self.tally.ingest(stats.recent, stats.counters)
            window = tuple(self.tally.window(stats.time if stats is not None else now, self.config.window_min_tasks))
            signals = tuple(signals_from(stats, window)) if self.source is not None else ()
            self._reading = Reading(now, stats, error, window, signals)
            self.history.add(history_point(self._document(self._reading)))
            return self._reading

    def _snapshot(self) -> tuple[SchedulerStatsLike | None, str | None]:
        if self.source is None:
            return None, None
        try:
            stats = self.source()
        except Exception as exc:  # noqa: BLE001 - a scheduler that cannot be read is a figure (scheduler_up 0)
            error = f"{type(exc).__name__}: {exc}"
            if error != self._last_error:  # once per distinct error, not once per scrape
                log.warning("monitor: cannot read the scheduler's statistics: %s", error)
            self._last_error = error
            return None, error
        if self._last_error is not None:
            log.info("monitor: the scheduler's statistics can be read again")
            self._last_error = None
        return stats, None

    def signals(self) -> tuple[Signal, ...]:
        """What alert rules read, from a fresh reading."""
        return self.read().signals

    # ------------------------------------------------------------------ output
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """``/metrics``: the Prometheus text format, or OpenMetrics when the ``Accept`` header asks for it."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def document(self) -> dict[str, Any]:
        """The ``/api/v1/metrics`` document."""
        with self._lock:
            return self._document(self.read())

    def history_points(self) -> list[dict[str, Any]]:
        """The chart points kept so far, oldest first."""
        return self.history.points()

    def _document(self, reading: Reading) -> dict[str, Any]:
        try:
            alerts = list(self.alerts())
        except Exception:  # noqa: BLE001 - the figures matter more than the alert list
            log.exception("monitor: the active alerts could not be read")
            alerts = []
        return metrics_document(
            time=reading.stats.time if reading.stats is not None else reading.time,
            stats=reading.stats,
            has_scheduler=self.source is not None,
            error=reading.error,
            tally=self.tally,
            window=reading.window,
            window_s=self.config.window_s,
            signals=reading.signals,
            http=self.http,
            scale_decisions=dict(self._scale),
            alerts=alerts,
        )

    def families(self) -> Iterator[Metric]:
        """Every family of this hub, from a fresh reading (what the registry's collector yields)."""
        with self._lock:
            reading = self.read()
            families = [
                *collector.snapshot_families(reading.stats, self.source is not None),
                *collector.tally_families(self.tally),
                *collector.process_families(self.http, dict(self._scale)),
            ]
        yield from families


class _HubCollector:
    """Adapter: prometheus-client calls ``collect()`` on each scrape."""

    def __init__(self, hub: MetricsHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        return self._hub.families()
