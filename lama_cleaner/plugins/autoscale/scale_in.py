"""Which nodes leave on scale-in: idle ones first, and a busy one only when no idle one is left.

A Kubernetes HPA removes pods without knowing which are working (KEDA's long-standing busy-pod
problem); Celery's autoscaler only ever shrinks idle processes. Here the choice is explicit and
made before anything is released: only nodes a provider started (they carry the instance labels)
may be chosen, and the order is

1. idle nodes, the longest idle first; then nodes still joining (they hold no work);
2. busy nodes last, the one furthest through its task first (draining lets it finish, so it
   frees its capacity soonest);
3. within each group, nodes of a provider later in the queue's preference list go first, so
   capacity that fell back to, say, ``local`` is handed back before the preferred provider's.

Draining is never destructive (the node finishes its current task), so even a busy node is safe
to choose; the order only decides how soon capacity is freed and which provider keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .labels import provider_of
from .observed import BUSY, IDLE, JOINING, NodeInfoView

_STATE_RANK = {IDLE: 0, JOINING: 1, BUSY: 2}


def is_managed(node: NodeInfoView) -> bool:
    """A node a provider started (it advertises ``autoscale.provider``): only those are drained and released."""
    return provider_of(node.labels) is not None


def drain_order(
    nodes: Sequence[NodeInfoView],
    *,
    idle_since: Mapping[str, float],
    now: float,
    providers: Sequence[str] = (),
) -> list[NodeInfoView]:
    """The managed, drainable nodes of ``nodes`` in the order they should leave (see the module docstring)."""
    preference = {name: i for i, name in enumerate(providers)}

    def key(node: NodeInfoView) -> tuple[int, int, float, str]:
        provider = provider_of(node.labels) or ""
        provider_rank = -preference.get(provider, len(preference))  # later in the list (or unlisted) first
        if node.state == BUSY:
            closeness = -(node.progress or 0.0)  # furthest through its task first
        else:
            closeness = idle_since.get(node.node_id, now)  # idle longest first
        return (_STATE_RANK[node.state], provider_rank, closeness, node.node_id)

    candidates = [n for n in nodes if n.state in _STATE_RANK and is_managed(n)]
    return sorted(candidates, key=key)


def choose_nodes_to_drain(
    nodes: Sequence[NodeInfoView],
    count: int,
    *,
    idle_since: Mapping[str, float],
    now: float,
    providers: Sequence[str] = (),
    idle_only: bool = False,
) -> list[NodeInfoView]:
    """Up to ``count`` nodes to drain, in :func:`drain_order`; with ``idle_only`` no busy or joining node."""
    ordered = drain_order(nodes, idle_since=idle_since, now=now, providers=providers)
    if idle_only:
        ordered = [n for n in ordered if n.state == IDLE]
    return ordered[: max(0, count)]
