"""What the scheduler knows about each node: registration, liveness, credit and current task.

In memory only: nodes re-register (HELLO) after a scheduler restart, so nothing here is journaled.
The credit rules (one task per node in total, a finished task doubles as the next READY) live on
:class:`NodeEntry` so the message handlers and the dispatcher apply them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import protocol as p


@dataclass
class NodeEntry:
    """What the scheduler knows about one node (in memory only: nodes re-register after a restart)."""

    node_id: str
    name: str
    ctrl_ident: bytes
    capabilities: dict[str, Any]
    allowed: set[str]
    rejected: dict[str, str]
    version: str | None = None
    pid: int | None = None
    loaded_model: str | None = None
    last_seen: float = 0.0
    registered_at: float = 0.0
    idle_since: float = 0.0
    queue_idents: dict[str, bytes] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    current_task: str | None = None
    current_attempt: int | None = None
    dispatched_at: float = 0.0
    draining: bool = False
    offline: bool = False
    offline_since: float = 0.0
    tasks_done: int = 0
    models: frozenset[str] | None = field(init=False, default=None)
    """``capabilities.models`` as a set (None: not declared, any model), for dispatch every round."""
    plugins: frozenset[str] | None = field(init=False, default=None)
    """``capabilities.plugins`` as a set (None: not declared)."""

    def __post_init__(self) -> None:
        self.models = name_set(self.capabilities.get("models"))
        self.plugins = name_set(self.capabilities.get("plugins"))

    @property
    def state(self) -> str:
        if self.offline:
            return p.NODE_OFFLINE
        if self.draining:
            return p.NODE_DRAINING
        if self.current_task:
            return p.NODE_BUSY
        return p.NODE_IDLE

    def has_credit(self) -> bool:
        return not (self.offline or self.draining or self.current_task) and bool(self.ready)

    def grant_implied_credit(self, now: float, *, ready: bool = True) -> None:
        """A finished task (RESULT/FAILED/CANCELLED) is also the node's next READY on every queue
        it joined, as in the Guide's load-balancing broker; READY on a queue socket may arrive
        before the RESULT on the control socket and is then ignored, so this keeps the node usable.

        ``ready=False`` (the outcome said ``ready: false``, e.g. the node is restarting its inference
        process after a hard cancel) frees the node of its task without the credit: a TASK sent now
        would only bounce back. The node sends READY itself once it can work again."""
        self.current_task = None
        self.current_attempt = None
        if not ready:
            self.ready.clear()
            return
        if not (self.offline or self.draining):
            if not self.ready:
                self.idle_since = now
            self.ready = {q for q in self.queue_idents if q in self.allowed}

    def public(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "name": self.name,
            "state": self.state,
            "capabilities": self.capabilities,
            "queues": sorted(self.allowed),
            "rejected": dict(self.rejected),
            "current_task": self.current_task,
            "credit": sorted(self.ready) if self.has_credit() else [],
            "loaded_model": self.loaded_model,
            "last_heartbeat": self.last_seen,
            "version": self.version,
            "pid": self.pid,
            "tasks_done": self.tasks_done,
        }


def holds(node: NodeEntry, task_id: str, attempt: int) -> bool:
    """Whether ``node`` is running exactly this attempt of the task (so its outcome frees the node)."""
    return node.current_task == task_id and node.current_attempt == attempt


def name_set(value: Any) -> frozenset[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None
