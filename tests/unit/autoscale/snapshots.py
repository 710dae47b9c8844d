"""Stand-ins for the scheduler's ``SchedulerStats`` with exactly the field names of the planned handle.

The autoscaler reads the snapshot only through these names, so recorded sequences built from
these dataclasses replay the same way against the real ``SchedulerStats`` later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QueueStats:
    name: str
    queued: int = 0
    running: int = 0
    oldest_queued_age_s: float | None = None
    unschedulable: int = 0


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    state: str = "idle"
    queues: tuple[str, ...] = ("gpu",)
    models: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    current_task: str | None = None
    progress: float | None = None
    heartbeat_age_s: float = 0.0
    loaded_models: tuple[str, ...] = ()
    tasks_done: int = 0


@dataclass(frozen=True)
class SchedulerStats:
    time: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    queues: dict[str, QueueStats] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    recent: list[Any] = field(default_factory=list)


def managed(node_id: str, provider: str = "local", **kwargs: Any) -> NodeInfo:
    """A node a provider started (it carries the instance labels)."""
    labels = {"autoscale.provider": provider, "autoscale.instance": f"{provider}-{node_id}"}
    return NodeInfo(node_id, labels=labels, **kwargs)


def stats(queues: dict[str, dict[str, Any]] | None = None, nodes: list[NodeInfo] | None = None) -> SchedulerStats:
    """``stats({"gpu": {"queued": 3}}, [managed("a")])``."""
    return SchedulerStats(
        queues={name: QueueStats(name, **values) for name, values in (queues or {}).items()},
        nodes=list(nodes or []),
    )
