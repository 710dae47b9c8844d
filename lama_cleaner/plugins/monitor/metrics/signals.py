"""The values alert rules are evaluated against, named and labelled.

Prometheus evaluates rules over its time series with PromQL; the monitor's own rules have no query language,
so the figures a rule may test are computed here, from the latest snapshot and the finished-task window, as
a flat list of labelled values. ``/api/v1/metrics`` shows the same list, so an operator writing a rule sees
exactly what it will read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .snapshot import NODE_STATES, QueueStatsLike, SchedulerStatsLike
from .task_tally import WindowFigures

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Signal:
    """One value a rule can test: ``name{labels} = value``."""

    name: str
    labels: Labels
    value: float

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


SIGNALS: dict[str, tuple[tuple[str, ...], str]] = {
    "queue_depth": (("queue",), "Tasks waiting in the queue."),
    "queue_running": (("queue",), "Tasks of the queue running on a node."),
    "queue_oldest_age_seconds": (("queue",), "Age of the oldest waiting task (0 when none waits)."),
    "queue_unschedulable": (("queue",), "Waiting tasks that no online node can run."),
    "nodes": (("state",), "Nodes in each state (joining, idle, busy, draining, offline)."),
    "node_offline": (("node",), "1 for a node the scheduler counts as offline, 0 for the others."),
    "node_heartbeat_age_seconds": (("node",), "Time since the node's last heartbeat."),
    "task_failure_ratio": (("queue",), "Failed / (completed + failed) over the window (needs window_min_tasks)."),
    "task_run_p50_seconds": (("queue",), "Median run time of completed tasks over the window."),
    "task_run_p95_seconds": (("queue",), "95th percentile of run time of completed tasks over the window."),
    "task_wait_p50_seconds": (("queue",), "Median queue wait over the window."),
    "task_wait_p95_seconds": (("queue",), "95th percentile of queue wait over the window."),
    "scheduler_up": ((), "1 when the last snapshot of the scheduler succeeded, else 0."),
}
"""Every signal: its label names and what it means (documented in docs/monitoring.md)."""


def _labels(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


def signals_from(stats: SchedulerStatsLike | None, window: Sequence[WindowFigures]) -> list[Signal]:
    """Signals of one snapshot (``None`` when the scheduler could not be read) and its window figures."""
    out = [Signal("scheduler_up", (), 1.0 if stats is not None else 0.0)]
    if stats is None:
        return out  # no figures rather than stale ones: rules on them resolve, scheduler_up tells why
    out.extend(_queue_signals(stats.queues))
    states = dict.fromkeys(NODE_STATES, 0)
    for node in stats.nodes:
        states[node.state] = states.get(node.state, 0) + 1
        out.append(Signal("node_offline", _labels(node=node.node_id), 1.0 if node.state == "offline" else 0.0))
        if node.heartbeat_age_s is not None:
            out.append(Signal("node_heartbeat_age_seconds", _labels(node=node.node_id), float(node.heartbeat_age_s)))
    out.extend(Signal("nodes", _labels(state=state), float(n)) for state, n in states.items())
    out.extend(_window_signals(f for f in window if f.queue is not None))
    return out


def _queue_signals(queues: Mapping[str, QueueStatsLike]) -> list[Signal]:
    out = []
    for name in sorted(queues):
        q = queues[name]
        labels = _labels(queue=name)
        out.append(Signal("queue_depth", labels, float(q.queued)))
        out.append(Signal("queue_running", labels, float(q.running)))
        out.append(Signal("queue_oldest_age_seconds", labels, float(q.oldest_queued_age_s or 0.0)))
        out.append(Signal("queue_unschedulable", labels, float(q.unschedulable)))
    return out


def _window_signals(figures: Iterable[WindowFigures]) -> list[Signal]:
    out = []
    for f in figures:
        labels = _labels(queue=str(f.queue))
        for name, value in (
            ("task_failure_ratio", f.failure_ratio),
            ("task_run_p50_seconds", f.run_p50_s),
            ("task_run_p95_seconds", f.run_p95_s),
            ("task_wait_p50_seconds", f.wait_p50_s),
            ("task_wait_p95_seconds", f.wait_p95_s),
        ):
            if value is not None:  # too few tasks: no value, so a rule on it stays (or goes back to) inactive
                out.append(Signal(name, labels, float(value)))
    return out
