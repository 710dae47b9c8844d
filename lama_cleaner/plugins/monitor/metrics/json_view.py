"""One reading of the hub -> the ``/api/v1/metrics`` document (the dashboard renders exactly this).

Same figures as ``/metrics``, shaped for a page and a script rather than for Prometheus: queues and nodes
as lists of objects, histograms with their cumulative buckets, the window's percentiles, recent failures,
active alerts and the signals alert rules read. ``version`` changes if a field changes meaning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .histograms import HistogramSet
from .http import HttpMetrics
from .names import COUNTER_JSON_NAMES
from .signals import Signal
from .snapshot import NODE_STATES, SchedulerStatsLike, sample_error
from .task_tally import TaskTally, WindowFigures

VERSION = 1


def metrics_document(
    *,
    time: float,
    stats: SchedulerStatsLike | None,
    has_scheduler: bool,
    error: str | None,
    tally: TaskTally,
    window: Sequence[WindowFigures],
    window_s: float,
    signals: Sequence[Signal],
    http: HttpMetrics,
    scale_decisions: Mapping[tuple[str, str], int],
    alerts: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The whole document; every number is a plain JSON number (no NaN or infinity)."""
    counters = dict(stats.counters) if stats is not None else {}
    return {
        "version": VERSION,
        "time": time,
        "scheduler": {"present": has_scheduler, "up": stats is not None, "error": error},
        "queues": _queues(stats),
        "nodes": _nodes(stats),
        "nodes_by_state": _nodes_by_state(stats),
        "tasks": {
            "finished": [
                {"queue": q, "kind": k, "model": m, "status": s, "count": n}
                for (q, k, m, s), n in sorted(tally.finished.items())
            ],
            "finished_total": tally.finished_by_status(),
            "samples_missed": tally.samples_missed,
        },
        "counters": {json_name: int(counters.get(key, 0)) for key, json_name in COUNTER_JSON_NAMES.items()},
        "scheduler_events": {k: int(v) for k, v in sorted(counters.items()) if k not in COUNTER_JSON_NAMES},
        "latency": {
            "window_s": window_s,
            "all": _figures(window[0]) if window else _figures(None),
            "queues": [_figures(f) for f in window[1:]],
        },
        "histograms": {
            "task_queue_wait_seconds": _histograms(tally.wait, ("queue", "model")),
            "task_run_seconds": _histograms(tally.run, ("queue", "model")),
            "http_request_duration_seconds": _histograms(http.durations, ("method", "route")),
        },
        "http": [
            {"method": m, "route": r, "status": s, "count": n} for (m, r, s), n in sorted(http.requests().items())
        ],
        "scale_decisions": [{"action": a, "queue": q, "count": n} for (a, q), n in sorted(scale_decisions.items())],
        "recent_failures": [
            {
                "task_id": s.task_id,
                "queue": s.queue,
                "kind": s.kind,
                "name": s.name,
                "node_id": s.node_id,
                "attempts": s.attempts,
                "finished_at": s.finished_at,
                "error": sample_error(s),
            }
            for s in reversed(tally.failures)
        ],
        "alerts": [dict(a) for a in alerts],
        "signals": [{"name": s.name, "labels": s.label_dict(), "value": _number(s.value)} for s in signals],
    }


def _number(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _queues(stats: SchedulerStatsLike | None) -> list[dict[str, Any]]:
    if stats is None:
        return []
    return [
        {
            "name": name,
            "queued": q.queued,
            "running": q.running,
            "oldest_queued_age_s": q.oldest_queued_age_s,
            "unschedulable": q.unschedulable,
        }
        for name, q in sorted(stats.queues.items())
    ]


def _nodes(stats: SchedulerStatsLike | None) -> list[dict[str, Any]]:
    if stats is None:
        return []
    return [
        {
            "node_id": n.node_id,
            "name": getattr(n, "name", None) or n.node_id,  # what the operator called it (--name)
            "state": n.state,
            "queues": list(n.queues),
            "models": list(n.models),
            "loaded_models": list(n.loaded_models),
            "labels": dict(n.labels),
            "device": n.device,
            "current_task": n.current_task,
            "progress": n.progress,
            "heartbeat_age_s": n.heartbeat_age_s,
            "tasks_done": n.tasks_done,
        }
        for n in sorted(stats.nodes, key=lambda n: n.node_id)
    ]


def _nodes_by_state(stats: SchedulerStatsLike | None) -> dict[str, int]:
    counts = dict.fromkeys(NODE_STATES, 0)
    for node in stats.nodes if stats is not None else ():
        counts[node.state] = counts.get(node.state, 0) + 1
    return counts


def _figures(f: WindowFigures | None) -> dict[str, Any]:
    keys = ("count", "completed", "failed", "cancelled", "failure_ratio")
    keys += ("wait_p50_s", "wait_p95_s", "run_p50_s", "run_p95_s")
    if f is None:
        return {"queue": None, **{k: 0 if k in ("count", "completed", "failed", "cancelled") else None for k in keys}}
    return {"queue": f.queue, **{k: getattr(f, k) for k in keys}}


def _histograms(histograms: HistogramSet, label_names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "labels": dict(zip(label_names, r.labels, strict=True)),
            "buckets": [["+Inf" if math.isinf(b) else b, n] for b, n in r.buckets],
            "sum": r.total,
            "count": r.count,
        }
        for r in histograms.read()
    ]
