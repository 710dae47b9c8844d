"""What the scheduler knows about each node: registration, liveness, credit and the tasks it holds.

In memory only: nodes re-register (HELLO) after a scheduler restart, so nothing here is journaled.
The credit rules live on :class:`NodeEntry` so the message handlers and the dispatcher apply them the
same way: a node advertises ``slots`` (its pipeline depth, absent = 1) and may hold that many tasks;
while it is *ready* (it sent READY, or its last outcome doubled as READY) its credit is its free
slots, ``slots - len(held)``; an outcome that says ``ready: false`` takes the credit away until the
node sends READY again. With one slot this is exactly one task per node, as in protocol minor 1.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..wire import protocol as p
from ..wire.shared_memory import SharedRegion

MAX_SLOTS = 16
"""The most tasks the scheduler hands one node at once, whatever ``slots`` it advertises."""


class HeldAttempt(NamedTuple):
    """One task a node holds: the attempt dispatched to it, and when."""

    attempt: int
    dispatched_at: float
    slot: int | None = None
    """Its slot in the node's shared memory (``wire.shared_memory``), if it has one."""


def slots_of(capabilities: dict[str, Any]) -> int:
    """The pipeline depth a node advertises (``capabilities.slots``): absent or malformed = 1."""
    value = capabilities.get("slots")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return min(value, MAX_SLOTS)
    return 1


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
    """The queues the node is ready on (its READY, or an outcome that doubled as one); its credit on
    them is its free slots."""
    held: dict[str, HeldAttempt] = field(default_factory=dict)
    """The tasks dispatched to the node and not finished yet, in dispatch order."""
    dispatched_at: float = 0.0
    """When the node was last handed a task."""
    draining: bool = False
    drain_sent_at: float = 0.0
    """When the scheduler last sent this node ``DRAIN`` (re-sent if the node still says it is not draining)."""
    ready_asked_at: float = 0.0
    """When the scheduler last asked this node for READY (``HEARTBEAT send_ready``), at most once an interval."""
    offline: bool = False
    offline_since: float = 0.0
    tasks_done: int = 0
    left: bool = False
    """Set when the node said BYE (it left on purpose); an offline node without it vanished."""
    reported_models: tuple[str, ...] = ()
    """The models the node last said it holds loaded (HELLO/HEARTBEAT ``loaded_models``, or its
    ``loaded_model``); unlike ``loaded_model``, never the scheduler's own prediction."""
    heartbeats_missed: int = 0
    """Heartbeat intervals of its current silence already counted in ``heartbeats_missed``."""
    peer_key: str | None = None
    """The CURVE key (Z85) that registered this node id; None without CURVE. Every message as this
    node must come from it (a node id is the node's own choice, so anyone could claim one)."""
    models: frozenset[str] | None = field(init=False, default=None)
    """``capabilities.models`` as a set (None: not declared, any model), for dispatch every round."""
    plugins: frozenset[str] | None = field(init=False, default=None)
    """``capabilities.plugins`` as a set (None: not declared)."""
    slots: int = field(init=False, default=1)
    """How many tasks the node may hold at once (``capabilities.slots``, its pipeline depth)."""
    shared: SharedRegion | None = None
    """The node's shared memory, mapped here (same host, protocol minor 4); None: bytes on the wire."""

    def __post_init__(self) -> None:
        self.models = name_set(self.capabilities.get("models"))
        self.plugins = name_set(self.capabilities.get("plugins"))
        self.slots = slots_of(self.capabilities)

    @property
    def current_task(self) -> str | None:
        """The oldest task the node holds (the one a one-slot node runs), or None."""
        return next(iter(self.held), None)

    @property
    def current_attempt(self) -> int | None:
        task_id = self.current_task
        return None if task_id is None else self.held[task_id].attempt

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - len(self.held))

    @property
    def state(self) -> str:
        if self.offline:
            return p.NODE_OFFLINE
        if self.draining:
            return p.NODE_DRAINING
        if self.held:
            return p.NODE_BUSY
        return p.NODE_IDLE

    def has_credit(self) -> bool:
        return not (self.offline or self.draining) and bool(self.ready) and len(self.held) < self.slots

    def hold(self, task_id: str, attempt: int, now: float, slot: int | None = None) -> None:
        """The node was handed ``attempt`` of ``task_id`` (a dispatch, or its HELLO says it runs it),
        in shared-memory ``slot`` if any. A node whose slots are all taken has no credit left: it is
        ready again on its next outcome."""
        self.held[task_id] = HeldAttempt(attempt, now, slot)
        self.dispatched_at = now
        if len(self.held) >= self.slots:
            self.ready.clear()

    def free_shared_slot(self) -> int | None:
        """A slot of the node's shared memory no held task uses, or None (no region, or all taken)."""
        if self.shared is None:
            return None
        taken = {h.slot for h in self.held.values()}
        return next((i for i in range(self.shared.slots) if i not in taken), None)

    def drop_shared(self) -> None:
        """Unmap the node's shared memory (it left, went silent, or registered again)."""
        if self.shared is not None:
            self.shared.close()
            self.shared = None

    def release(self, task_id: str) -> HeldAttempt | None:
        """Forget a held task (finished, lost or taken back); its slot is free again."""
        return self.held.pop(task_id, None)

    def grant_implied_credit(self, now: float, task_id: str | None = None, *, ready: bool = True) -> None:
        """A finished task (RESULT/FAILED/CANCELLED) is also the node's next READY on every queue
        it joined, as in the Guide's load-balancing broker; READY on a queue socket may arrive
        before the RESULT on the control socket and is then ignored, so this keeps the node usable.
        ``task_id`` is the finished task (None: the oldest held one).

        ``ready=False`` (the outcome said ``ready: false``, e.g. the node is restarting its inference
        process after a hard cancel) frees the node of its task without the credit: a TASK sent now
        would only bounce back. The node sends READY itself once it can work again."""
        self.release(task_id if task_id is not None else (self.current_task or ""))
        self.make_ready(now, ready=ready)

    def make_ready(self, now: float, *, ready: bool = True) -> None:
        """The node can start work now on every queue it joined (``ready=False``: it cannot)."""
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
            "tasks": list(self.held),
            "slots": self.slots,
            "credit": sorted(self.ready) if self.has_credit() else [],
            "loaded_model": self.loaded_model,
            "last_heartbeat": self.last_seen,
            "version": self.version,
            "pid": self.pid,
            "tasks_done": self.tasks_done,
        }


class DrainedNodes:
    """Ids of the nodes the scheduler was asked to drain, so a drain survives the node re-registering.

    A node that reconnects says HELLO again and gets a fresh :class:`NodeEntry`; without this memory
    it would come back undrained and take work again. An id stays until the node says BYE or the
    scheduler forgets the node; at most ``limit`` ids are kept (the oldest go first)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, node_id: str) -> None:
        self._ids[node_id] = None
        self._ids.move_to_end(node_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def discard(self, node_id: str) -> None:
        self._ids.pop(node_id, None)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class FailedOn:
    """For each task that failed and waits for a retry: the nodes its failed attempts ran on.

    Dispatch prefers other nodes for the retry (``routing.preferred_nodes``). In memory only: after a
    scheduler restart a retry may go anywhere, which is merely the old behaviour. Bounded: beyond
    ``limit`` tasks, those no longer live (finished) are dropped, then the oldest."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._nodes: OrderedDict[str, frozenset[str]] = OrderedDict()

    def add(self, task_id: str, node_id: str, live: Container[str] = ()) -> None:
        """Remember that ``task_id`` failed on ``node_id``; ``live``: ids of unfinished tasks (for pruning)."""
        self._nodes[task_id] = self._nodes.get(task_id, frozenset()) | {node_id}
        self._nodes.move_to_end(task_id)
        if len(self._nodes) > self.limit:
            for gone in [t for t in self._nodes if t not in live]:
                del self._nodes[gone]
            while len(self._nodes) > self.limit:
                self._nodes.popitem(last=False)

    def get(self, task_id: str) -> frozenset[str]:
        return self._nodes.get(task_id, frozenset())

    def discard(self, task_id: str) -> None:
        self._nodes.pop(task_id, None)

    def __bool__(self) -> bool:
        return bool(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)


def holds(node: NodeEntry, task_id: str, attempt: int) -> bool:
    """Whether ``node`` is running exactly this attempt of the task (so its outcome frees a slot)."""
    held = node.held.get(task_id)
    return held is not None and held.attempt == attempt


def reported_models(header: dict[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """The loaded models a HELLO or HEARTBEAT reports: its ``loaded_models`` list, else its
    ``loaded_model``; ``default`` when it says neither."""
    models = header.get("loaded_models")
    if isinstance(models, list):
        return tuple(str(m) for m in models if isinstance(m, str) and m)
    if "loaded_model" in header:
        model = header["loaded_model"]
        return (model,) if isinstance(model, str) and model else ()
    return default


def name_set(value: Any) -> frozenset[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None
