"""Every instance a provider launched, from launch until it is gone.

An instance is **pending** until a node with its labels registers (then **registered**), becomes
**leaving** once the autoscaler asked its node to drain, and **ended** when it is released, leaves
or is found missing. Two endings are abnormal and counted against the provider:

- **never registered**: still pending ``register_timeout_s`` after launch (a cold start that never
  finished, an image that cannot pull, a function that cannot reach the scheduler);
- **vanished**: its node went offline or disappeared without a goodbye (a SIGKILL, a reclaimed spot
  instance, a platform time limit). Its task is re-queued by the scheduler as for any lost node.

A node says goodbye (BYE) when it is drained, stopped, or idles out; the ``node_event`` hook reports
that as ``left`` and :meth:`InstanceTracker.node_gone` records it. A node seen offline or missing
in a snapshot with no goodbye recorded within ``goodbye_grace_s`` counts as vanished, unless the
autoscaler itself was draining it.

Nodes carrying an ``autoscale.provider`` label that the tracker never launched (started before a
restart of the autoscaler, or a pod the ReplicaSet replaced) are **adopted**, so they can be
drained and released like the others. Pure bookkeeping over an injected time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .labels import instance_of, provider_of
from .observed import DRAINING, OFFLINE, NodeInfoView
from .providers.base import LaunchedInstance

PENDING = "pending"
REGISTERED = "registered"
LEAVING = "leaving"
ENDED = "ended"

REGISTERED_EVENT = "registered"
ADOPTED_EVENT = "adopted"
LEFT_EVENT = "left"
NEVER_REGISTERED_EVENT = "never_registered"
VANISHED_EVENT = "vanished"
ABNORMAL = frozenset({NEVER_REGISTERED_EVENT, VANISHED_EVENT})


@dataclass
class Tracked:
    """One launched (or adopted) instance and what became of it."""

    instance: LaunchedInstance
    launched_at: float
    key: str
    """The tracker's own id: the instance id, or a generated one for a platform-named launch."""
    status: str = PENDING
    node_id: str | None = None
    registered_at: float | None = None
    drain_at: float | None = None
    gone_at: float | None = None
    """When its node was first seen offline or missing (the goodbye grace runs from here)."""
    goodbye: bool = False
    ended_at: float | None = None
    end: str = ""

    def to_dict(self) -> dict[str, Any]:
        inst = self.instance
        return {
            "key": self.key,
            "provider": inst.provider,
            "queue": inst.queue,
            "instance_id": inst.instance_id,
            "detail": dict(inst.detail),
            "status": self.status,
            "node_id": self.node_id,
            "launched_at": self.launched_at,
            "registered_at": self.registered_at,
            "end": self.end,
        }


@dataclass(frozen=True)
class TrackEvent:
    kind: str
    provider: str
    queue: str
    key: str
    node_id: str | None
    at: float
    reason: str

    @property
    def abnormal(self) -> bool:
        return self.kind in ABNORMAL


@dataclass
class InstanceTracker:
    register_timeout_s: float
    goodbye_grace_s: float = 10.0
    ended_kept: int = 200
    """Ended instances kept for the API (the oldest are dropped)."""
    abnormal: dict[str, int] = field(default_factory=dict)
    """Abnormal endings per provider."""
    _live: dict[str, Tracked] = field(default_factory=dict)
    _ended: list[Tracked] = field(default_factory=list)
    _by_node: dict[str, str] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ what the autoscaler reports
    def launched(self, instances: Iterable[LaunchedInstance], now: float) -> list[Tracked]:
        added = []
        for inst in instances:
            key = inst.instance_id or f"{inst.provider}#{next(self._seq)}"
            if key in self._live:  # the same instance registering again (a restarted container)
                key = f"{key}~{next(self._seq)}"
            tracked = Tracked(inst, now, key)
            self._live[key] = tracked
            added.append(tracked)
        return added

    def drain_requested(self, node_ids: Iterable[str], now: float) -> None:
        for node_id in node_ids:
            tracked = self._node(node_id)
            if tracked is not None and tracked.status == REGISTERED:
                tracked.status, tracked.drain_at = LEAVING, now

    def node_joined(self, node: NodeInfoView, now: float) -> TrackEvent | None:
        """A node registered (the ``node_event`` hook's ``joined``): match it to its launch now rather
        than at the next snapshot, so an instance that registers and idles out between two snapshots
        is not taken for one that never came."""
        if provider_of(node.labels) is None or node.node_id in self._by_node or node.state == OFFLINE:
            return None
        return self._register(node, now)

    def node_gone(self, node_id: str, *, goodbye: bool, now: float) -> None:
        """The scheduler reported a node leaving (``goodbye``: it said BYE) or going offline."""
        tracked = self._node(node_id)
        if tracked is None:
            return
        if tracked.gone_at is None:
            tracked.gone_at = now
        tracked.goodbye = tracked.goodbye or goodbye

    def released(self, keys: Iterable[str], now: float) -> None:
        """The provider freed these instances (after their drain)."""
        for key in keys:
            tracked = self._live.get(key)
            if tracked is not None:
                self._finish(tracked, now, "released")

    # ------------------------------------------------------------------ reconciling with a snapshot
    def observe(self, nodes: Sequence[NodeInfoView], now: float) -> list[TrackEvent]:
        """Match registered nodes to launches, adopt unknown managed nodes, and end the instances
        whose nodes are gone or never came. Returns what happened, abnormal endings included."""
        events: list[TrackEvent] = []
        present: dict[str, NodeInfoView] = {}
        for node in nodes:
            present[node.node_id] = node
            event = self.node_joined(node, now)
            if event is not None:
                events.append(event)
        for tracked in list(self._live.values()):
            if tracked.status == PENDING:
                if now - tracked.launched_at >= self.register_timeout_s:
                    why = f"not registered {now - tracked.launched_at:.0f} s after launch"
                    events.append(self._end(tracked, now, NEVER_REGISTERED_EVENT, why))
                continue
            if tracked.status != REGISTERED:
                continue  # leaving: released by the autoscaler once drained or gone (see releasable)
            node = present.get(tracked.node_id or "")
            if node is not None and node.state != OFFLINE:
                continue
            if tracked.gone_at is None:
                tracked.gone_at = now
            if tracked.goodbye:
                events.append(self._end(tracked, now, LEFT_EVENT, f"node {tracked.node_id} left"))
            elif now - tracked.gone_at >= self.goodbye_grace_s:
                why = f"node {tracked.node_id} went away without goodbye"
                events.append(self._end(tracked, now, VANISHED_EVENT, why))
        return events

    def _register(self, node: NodeInfoView, now: float) -> TrackEvent:
        provider = provider_of(node.labels) or ""
        tracked = self._match(provider, instance_of(node.labels), node)
        kind = REGISTERED_EVENT
        if tracked is None:
            queue = node.queues[0] if node.queues else ""
            inst = LaunchedInstance(provider, queue, instance_of(node.labels), {"adopted": True})
            [tracked] = self.launched([inst], now)
            kind = ADOPTED_EVENT
        if tracked.instance.instance_id is None:  # a platform-named launch learns its name
            tracked.instance = replace(tracked.instance, instance_id=instance_of(node.labels))
        tracked.status, tracked.node_id, tracked.registered_at = REGISTERED, node.node_id, now
        if node.state == DRAINING:
            tracked.status, tracked.drain_at = LEAVING, now
        self._by_node[node.node_id] = tracked.key
        return self._event(kind, tracked, now, f"node {node.node_id} registered")

    def _match(self, provider: str, instance_id: str | None, node: NodeInfoView) -> Tracked | None:
        if instance_id:
            tracked = self._live.get(instance_id)
            if tracked is not None and tracked.status == PENDING and tracked.instance.provider == provider:
                return tracked
        # a platform-named launch: the oldest pending one of this provider, preferring one for this node's queues
        anonymous = [
            t
            for t in self._live.values()
            if t.status == PENDING and t.instance.instance_id is None and t.instance.provider == provider
        ]
        anonymous.sort(key=lambda t: (t.instance.queue not in node.queues, t.launched_at))
        if anonymous and (instance_id is None or instance_id not in self._live):
            return anonymous[0]
        return None

    # ------------------------------------------------------------------ queries
    def releasable(self, nodes: Sequence[NodeInfoView]) -> list[Tracked]:
        """Leaving instances whose node holds no task any more (draining and idle) or is gone:
        their capacity can be freed now without killing any work."""
        by_id = {n.node_id: n for n in nodes}
        ready = []
        for tracked in self._live.values():
            if tracked.status != LEAVING:
                continue
            node = by_id.get(tracked.node_id or "")
            if node is None or node.state == OFFLINE or (node.state == DRAINING and node.current_task is None):
                ready.append(tracked)
        return ready

    def pending(self) -> dict[str, int]:
        """Launched, not registered yet, per queue (the policy counts them as nodes on their way)."""
        counts: dict[str, int] = {}
        for tracked in self._live.values():
            if tracked.status == PENDING:
                counts[tracked.instance.queue] = counts.get(tracked.instance.queue, 0) + 1
        return counts

    def leaving_nodes(self) -> set[str]:
        return {t.node_id for t in self._live.values() if t.status == LEAVING and t.node_id}

    def live(self) -> list[Tracked]:
        return list(self._live.values())

    def ended(self) -> list[Tracked]:
        return list(self._ended)

    def by_node(self, node_id: str) -> Tracked | None:
        return self._node(node_id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "live": [t.to_dict() for t in self._live.values()],
            "ended": [t.to_dict() for t in self._ended[-50:]],
            "abnormal": dict(self.abnormal),
        }

    # ------------------------------------------------------------------ internals
    def _node(self, node_id: str) -> Tracked | None:
        key = self._by_node.get(node_id)
        return self._live.get(key) if key is not None else None

    def _event(self, kind: str, tracked: Tracked, now: float, reason: str) -> TrackEvent:
        inst = tracked.instance
        return TrackEvent(kind, inst.provider, inst.queue, tracked.key, tracked.node_id, now, reason)

    def _end(self, tracked: Tracked, now: float, kind: str, reason: str) -> TrackEvent:
        self._finish(tracked, now, kind)
        if kind in ABNORMAL:
            provider = tracked.instance.provider
            self.abnormal[provider] = self.abnormal.get(provider, 0) + 1
        return self._event(kind, tracked, now, reason)

    def _finish(self, tracked: Tracked, now: float, end: str) -> None:
        tracked.status, tracked.ended_at, tracked.end = ENDED, now, end
        self._live.pop(tracked.key, None)
        if tracked.node_id is not None:
            self._by_node.pop(tracked.node_id, None)
        self._ended.append(tracked)
        del self._ended[: -self.ended_kept]
