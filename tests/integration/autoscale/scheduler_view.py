"""The real scheduler's current ``stats()`` read in the ``SchedulerStats`` shape the autoscaler expects.

A stop-gap for these tests until the distributed plugin's public ``SchedulerHandle`` exists; it
reads only what today's ``stats()`` offers (no oldest-wait or unschedulable counts per queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QueueView:
    name: str
    queued: int
    running: int
    oldest_queued_age_s: float | None = None
    unschedulable: int = 0


@dataclass(frozen=True)
class NodeView:
    node_id: str
    state: str
    queues: tuple[str, ...]
    labels: dict[str, str]
    current_task: str | None
    progress: float | None = None
    tasks_done: int = 0


@dataclass(frozen=True)
class StatsView:
    queues: dict[str, QueueView] = field(default_factory=dict)
    nodes: list[NodeView] = field(default_factory=list)


class SchedulerView:
    """``stats()``/``drain_node()``/``call()`` over a running :class:`Scheduler` (``call`` runs the
    ``scheduler_call`` hook of ``pluginmanager``, as the real handle does in the scheduler's process)."""

    local = True

    def __init__(self, scheduler: Any, pluginmanager: Any = None, config: Any = None) -> None:
        self.scheduler = scheduler
        self.pluginmanager = pluginmanager
        self.config = config
        self.drained: list[str] = []

    @property
    def control_endpoint(self) -> str:
        return self.scheduler.control_endpoint

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        answers = self.pluginmanager.hook.scheduler_call(name=name, payload=payload, config=self.config)
        if isinstance(answers, list):  # the hook is not declared yet where this stand-in is used
            answers = next((a for a in answers if a is not None), None)
        if answers is None:
            raise LookupError(name)
        return answers

    def stats(self) -> StatsView:
        raw = self.scheduler.stats()
        queues = {
            name: QueueView(name, int(q.get("queued", 0)), int(q.get("processing", 0)))
            for name, q in (raw.get("queues") or {}).items()
        }
        nodes = [
            NodeView(
                node_id=n["id"],
                state=n["state"],
                queues=tuple(n.get("queues") or ()),
                labels=dict((n.get("capabilities") or {}).get("labels") or {}),
                current_task=n.get("current_task"),
                tasks_done=int(n.get("tasks_done") or 0),
            )
            for n in raw.get("node_list") or []
        ]
        return StatsView(queues, nodes)

    def drain_node(self, node_id: str) -> bool:
        self.drained.append(node_id)
        self.scheduler.drain_node(node_id)
        return True
