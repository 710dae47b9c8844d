"""An in-memory scheduler for the autoscaler's unit tests: ``stats()`` and ``drain_node()`` only.

Tests move nodes through their states by hand (register an instance, make it busy, let it leave),
so each step of the autoscaler's loop can be checked on its own. The integration tests drive a
real scheduler instead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.unit.autoscale.snapshots import NodeInfo, QueueStats, SchedulerStats


class FakeScheduler:
    def __init__(self, queues: tuple[str, ...] = ("gpu",)) -> None:
        self.queues = {q: QueueStats(q) for q in queues}
        self.nodes: dict[str, NodeInfo] = {}
        self.drains: list[str] = []
        self.stats_error: Exception | None = None

    def stats(self) -> SchedulerStats:
        if self.stats_error is not None:
            raise self.stats_error
        return SchedulerStats(queues=dict(self.queues), nodes=list(self.nodes.values()))

    def drain_node(self, node_id: str) -> bool:
        self.drains.append(node_id)
        node = self.nodes.get(node_id)
        if node is None:
            return False
        self.nodes[node_id] = replace(node, state="draining")
        return True

    # ------------------------------------------------------------------ test controls
    def backlog(self, queue: str, queued: int, **kw: Any) -> None:
        self.queues[queue] = QueueStats(queue, queued=queued, **kw)

    def register(self, instance: Any, node_id: str | None = None, state: str = "idle") -> str:
        node_id = node_id or f"node-{instance.instance_id}"
        labels = {"autoscale.provider": instance.provider, "autoscale.instance": instance.instance_id}
        self.nodes[node_id] = NodeInfo(node_id, state=state, queues=(instance.queue,), labels=labels)
        return node_id

    def set_state(self, node_id: str, state: str, **kw: Any) -> None:
        self.nodes[node_id] = replace(self.nodes[node_id], state=state, **kw)

    def leave(self, node_id: str) -> None:
        self.nodes.pop(node_id, None)
