"""The state the scheduler's parts share, in one explicit object (:class:`SchedulerState`).

The node handlers, producer handlers, dispatcher, timers and stats all read and change the same
node registry and journal; each gets this object in its constructor instead of reaching into a
common base class, so what a part depends on is visible in its signature. Everything here is
touched by the loop thread only, except :class:`~.counters.Counters` (locked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import DistributedConfig
from ..journal import states
from ..journal.records import TaskRecord
from ..journal.task_store import TaskStore
from ..wire import protocol as p
from .counters import Counters
from .node_registry import DrainedNodes, FailedOn, NodeEntry
from .routing import ResourceClassOf


@dataclass
class SchedulerState:
    """Settings, the journal, the node registry and the bookkeeping several parts need."""

    dcfg: DistributedConfig
    resource_class_of: ResourceClassOf
    counters: Counters = field(default_factory=Counters)
    store: TaskStore | None = None
    """The journal, opened by ``Scheduler.start()``."""
    endpoints: dict[str, Any] = field(default_factory=dict)
    """``control``, ``inproc`` and ``queues`` (name -> endpoint) once the sockets are bound."""
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    ctrl_owner: dict[bytes, str] = field(default_factory=dict)
    """Control-socket identity -> the node id registered from it."""
    drained: DrainedNodes = field(default_factory=DrainedNodes)
    """Nodes drained on request, remembered across their re-registrations (until BYE or forgotten)."""
    failed_on: FailedOn = field(default_factory=FailedOn)
    """Nodes each retrying task failed on, which its next dispatch avoids when it can."""
    refunded: set[str] = field(default_factory=set)
    """Recovered tasks whose interrupted attempt was refunded (charged again if their node reclaims them)."""
    orphans_possible: bool = False
    """Set when a round's commit failed: the registry kept that round's changes while the journal
    lost them, so a task the journal still has running may be held by no node (its RESULT was the
    lost part). The next round's timers look for such tasks (``Requeue.requeue_orphans``)."""
    key_of: Callable[[str | None, bytes], str | None] | None = None
    """With CURVE: the key of a connection (``queue`` None: the control socket), set by the scheduler
    once its sockets exist; None without CURVE (see :meth:`peer_key`)."""

    def __post_init__(self) -> None:
        self.interval = float(self.dcfg.heartbeat_interval_s)
        self.liveness = max(1, int(self.dcfg.heartbeat_liveness))
        self.queues: list[str] = list(self.dcfg.queues)
        self.advertised: dict[str, Any] | None = None
        """``WELCOME.advertised`` (the control address and every queue's, as nodes behind a NAT or proxy
        reach them), or None without ``scheduler_advertise``."""
        if self.dcfg.scheduler_advertise:
            control = self.dcfg.scheduler_advertise
            self.advertised = {"control": control, "queues": p.queue_endpoints(control, self.queues)}

    @property
    def liveness_window(self) -> float:
        """Seconds of silence after which a peer counts as gone."""
        return self.interval * self.liveness

    def journal(self) -> TaskStore:
        assert self.store is not None
        return self.store

    def processing_on(self, task_id: str, node_id: str) -> TaskRecord | None:
        """The task's record while it is processing on ``node_id``; None once it finished, was
        cancelled or re-dispatched elsewhere (a message about it from that node is then stale)."""
        rec = self.journal().get(task_id)
        if rec is None or rec.status != states.PROCESSING or rec.node_id != node_id:
            return None
        return rec

    def peer_key(self, queue: str | None, ident: bytes) -> str | None:
        """The CURVE key (Z85) of the connection ``ident`` on the control socket (``queue`` None) or
        on that queue's socket; None without CURVE, or in-process."""
        return self.key_of(queue, ident) if self.key_of is not None else None
