"""A small deterministic queue simulator that replays recorded arrivals through the real policy.

Each tick (one policy interval): finished tasks free their nodes, started instances that finished
their cold start join, queued tasks go to idle nodes (FIFO), drained idle nodes leave; then the
snapshot the scheduler would report is handed to :func:`policy.evaluate` and its decisions are
applied (new instances start cold, chosen nodes drain and finish what they hold). Nothing is
random, so a recorded sequence always yields the same decisions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lama_cleaner.plugins.autoscale.config import QueuePolicy
from lama_cleaner.plugins.autoscale.decisions import SCALE_DOWN, SCALE_UP, Decision
from lama_cleaner.plugins.autoscale.policy import PolicyMemory, evaluate
from tests.unit.autoscale.snapshots import NodeInfo, QueueStats, SchedulerStats

QUEUE = "gpu"


@dataclass
class SimNode:
    node_id: str
    ready_at: float
    state: str = "starting"
    busy_until: float = 0.0
    task: int | None = None
    tasks_done: int = 0
    started_task_at: float = 0.0

    def info(self, now: float, service_s: float) -> NodeInfo:
        progress = None
        if self.task is not None:
            progress = min(1.0, (now - self.started_task_at) / service_s)
        labels = {"autoscale.provider": "local", "autoscale.instance": self.node_id}
        return NodeInfo(
            self.node_id,
            state=self.state,
            queues=(QUEUE,),
            labels=labels,
            current_task=None if self.task is None else f"t{self.task}",
            progress=progress,
            tasks_done=self.tasks_done,
        )


@dataclass
class Simulation:
    policy: QueuePolicy
    interval_s: float = 5.0
    service_s: float = 10.0
    cold_start_s: float = 15.0
    provider_limit: int | None = None
    now: float = 0.0
    memory: PolicyMemory = field(default_factory=PolicyMemory)
    nodes: list[SimNode] = field(default_factory=list)
    queue: deque[tuple[int, float]] = field(default_factory=deque)
    decisions: list[Decision] = field(default_factory=list)
    node_counts: list[tuple[float, int]] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    drained_busy_while_idle: int = 0
    _next_task: int = 0
    _next_node: int = 0

    # ------------------------------------------------------------------ one tick
    def step(self, arrivals: int) -> list[Decision]:
        for _ in range(arrivals):
            self.queue.append((self._next_task, self.now))
            self._next_task += 1
        self._advance()
        snapshot = self.snapshot()
        pending = sum(1 for n in self.nodes if n.state == "starting")
        headroom = None
        if self.provider_limit is not None:
            headroom = {QUEUE: self.provider_limit - len(self.nodes)}
        decisions = evaluate({QUEUE: self.policy}, snapshot, self.now, self.memory,
                             pending={QUEUE: pending}, headroom=headroom)  # fmt: skip
        for decision in decisions:
            self._apply(decision)
        self.decisions.extend(decisions)
        self.node_counts.append((self.now, len(self.nodes)))
        self.now += self.interval_s
        return decisions

    def run(self, arrivals: Callable[[float], int], duration_s: float) -> None:
        end = self.now + duration_s
        while self.now < end:
            self.step(arrivals(self.now))

    def _advance(self) -> None:
        for node in self.nodes:
            if node.task is not None and node.busy_until <= self.now:
                self.done.append(node.task)
                node.task = None
                node.tasks_done += 1
                if node.state == "busy":
                    node.state = "idle"
            if node.state == "starting" and node.ready_at <= self.now:
                node.state = "idle"
        for node in self.nodes:
            if node.state == "idle" and self.queue:
                task, _ = self.queue.popleft()
                node.state, node.task = "busy", task
                node.started_task_at, node.busy_until = self.now, self.now + self.service_s
                self.dispatched.append(task)
        self.nodes = [n for n in self.nodes if not (n.state == "draining" and n.task is None)]

    def snapshot(self) -> SchedulerStats:
        serving = [n for n in self.nodes if n.state in ("idle", "busy")]
        oldest = self.now - self.queue[0][1] if self.queue else None
        queue = QueueStats(
            QUEUE,
            queued=len(self.queue),
            running=sum(1 for n in self.nodes if n.task is not None),
            oldest_queued_age_s=oldest,
            unschedulable=len(self.queue) if not serving else 0,
        )
        infos = [n.info(self.now, self.service_s) for n in self.nodes if n.state != "starting"]
        return SchedulerStats(time=self.now, queues={QUEUE: queue}, nodes=infos)

    def _apply(self, decision: Decision) -> None:
        if decision.action == SCALE_UP:
            for _ in range(decision.count):
                self._next_node += 1
                self.nodes.append(SimNode(f"n{self._next_node}", ready_at=self.now + self.cold_start_s))
        elif decision.action == SCALE_DOWN:
            idle_exists = any(n.state == "idle" and n.node_id not in decision.drain for n in self.nodes)
            for node in self.nodes:
                if node.node_id in decision.drain:
                    if node.state == "busy" and idle_exists:
                        self.drained_busy_while_idle += 1
                    node.state = "draining"

    # ------------------------------------------------------------------ reading the record
    def alive(self) -> int:
        return len(self.nodes)

    def directions(self) -> list[str]:
        return [d.action for d in self.decisions]

    def flips(self) -> int:
        """How often the direction changed (up then down, or down then up)."""
        dirs = self.directions()
        return sum(1 for a, b in zip(dirs, dirs[1:], strict=False) if a != b)
