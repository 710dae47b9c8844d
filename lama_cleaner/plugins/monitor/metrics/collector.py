"""One reading of the hub -> Prometheus metric families.

A custom collector (not the client's ``Gauge``/``Counter`` objects): the gauges are whatever the scheduler's
snapshot says at scrape time, so they can never drift from it (a gauge updated by inc/dec events can miss a
dec and never return to zero), and a queue or node that is gone simply stops being reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from . import names
from .histograms import HistogramSet
from .http import HttpMetrics
from .names import MetricSpec
from .snapshot import NODE_STATES, SchedulerStatsLike
from .task_tally import TaskTally


def _gauge(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _counter(spec: MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)


def _histogram(spec: MetricSpec, histograms: HistogramSet) -> HistogramMetricFamily:
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    for reading in histograms.read():
        buckets = [(floatToGoString(bound), float(count)) for bound, count in reading.buckets]
        family.add_metric(list(reading.labels), buckets, reading.total)
    return family


def snapshot_families(stats: SchedulerStatsLike | None, has_scheduler: bool) -> Iterator[Metric]:
    """Gauges and scheduler counters of one snapshot (``None``: the scheduler could not be read)."""
    if not has_scheduler:
        return
    up = _gauge(names.SCHEDULER_UP)
    up.add_metric([], 1.0 if stats is not None else 0.0)
    yield up
    if stats is None:
        return  # nothing rather than stale figures; scheduler_up says why
    yield from _queue_families(stats)
    yield from _node_families(stats)
    yield from _scheduler_counter_families(stats.counters)


def _queue_families(stats: SchedulerStatsLike) -> Iterator[Metric]:
    depth, running = _gauge(names.QUEUE_DEPTH), _gauge(names.QUEUE_RUNNING)
    oldest, unschedulable = _gauge(names.QUEUE_OLDEST_AGE), _gauge(names.QUEUE_UNSCHEDULABLE)
    for name in sorted(stats.queues):
        q = stats.queues[name]
        depth.add_metric([name], q.queued)
        running.add_metric([name], q.running)
        oldest.add_metric([name], q.oldest_queued_age_s or 0.0)
        unschedulable.add_metric([name], q.unschedulable)
    yield from (depth, running, oldest, unschedulable)


def _node_families(stats: SchedulerStatsLike) -> Iterator[Metric]:
    by_state = dict.fromkeys(NODE_STATES, 0)
    by_queue: dict[tuple[str, str], int] = {(q, s): 0 for q in stats.queues for s in NODE_STATES}
    heartbeat = _gauge(names.NODE_HEARTBEAT_AGE)
    for node in stats.nodes:
        by_state[node.state] = by_state.get(node.state, 0) + 1
        for queue in node.queues:
            by_queue[(queue, node.state)] = by_queue.get((queue, node.state), 0) + 1
        if node.heartbeat_age_s is not None:
            heartbeat.add_metric([node.node_id], node.heartbeat_age_s)
    nodes, queue_nodes = _gauge(names.NODES), _gauge(names.QUEUE_NODES)
    for state, n in by_state.items():
        nodes.add_metric([state], n)
    for (queue, state), n in sorted(by_queue.items()):
        queue_nodes.add_metric([queue, state], n)
    yield from (nodes, queue_nodes, heartbeat)


def _scheduler_counter_families(counters: Mapping[str, int]) -> Iterator[Metric]:
    families: dict[str, CounterMetricFamily] = {}
    for key, (spec, labels) in names.SCHEDULER_COUNTERS.items():
        family = families.get(spec.name) or families.setdefault(spec.name, _counter(spec))
        family.add_metric([labels[label] for label in spec.labels], counters.get(key, 0))
    events = _counter(names.SCHEDULER_EVENTS)
    for key in sorted(counters):
        if key not in names.SCHEDULER_COUNTERS:
            events.add_metric([key], counters[key])
    yield from families.values()
    yield events


def tally_families(tally: TaskTally) -> Iterator[Metric]:
    """Finished tasks by status, their wait and run histograms, and the samples missed."""
    finished = _counter(names.TASKS_FINISHED)
    for key in sorted(tally.finished):
        finished.add_metric(list(key), tally.finished[key])
    yield finished
    yield _histogram(names.TASK_QUEUE_WAIT, tally.wait)
    yield _histogram(names.TASK_RUN, tally.run)
    missed = _counter(names.TASK_SAMPLES_MISSED)
    missed.add_metric([], tally.samples_missed)
    yield missed


def process_families(http: HttpMetrics, scale_decisions: Mapping[tuple[str, str], int]) -> Iterator[Metric]:
    """What this process itself recorded: HTTP requests and scaling decisions."""
    requests = _counter(names.HTTP_REQUESTS)
    counts = http.requests()
    for key in sorted(counts):
        requests.add_metric(list(key), counts[key])
    yield requests
    yield _histogram(names.HTTP_DURATION, http.durations)
    scale = _counter(names.SCALE_DECISIONS)
    for key in sorted(scale_decisions):
        scale.add_metric(list(key), scale_decisions[key])
    yield scale
