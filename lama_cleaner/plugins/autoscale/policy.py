"""The scaling policy: from one snapshot of the scheduler and the time, the decisions to make now.

Pure: no clock, no sockets, no providers. What it must remember between two evaluations (since
when a backlog has been high, since when a node has been idle, when each queue last scaled) is
kept in a :class:`PolicyMemory` the caller passes in, so a recorded sequence of snapshots replays
exactly in a test.

Per queue with a :class:`~.config.QueuePolicy`:

- **Nodes.** The queue's nodes are those serving it (joining, idle or busy; a draining node is
  leaving) plus the instances launched for it that have not registered yet (``pending``).
- **Wanted.** ``ceil(queued / queued_per_node)``; one more than it has when its oldest task waited
  longer than ``max_wait_s`` or it holds work no online node can run (only while nothing is on its
  way, so a slow cold start is not answered with a node per evaluation); never below ``min_nodes``.
- **Scale up** when wanted > nodes has held for ``up_window_s`` (at once below ``min_nodes``, or when
  work is queued and no node serves the queue at all: scale from zero), outside ``up_cooldown_s``,
  by at most ``max_step_up``, up to ``max_nodes`` and what the providers have room for (``headroom``).
- **Scale down** one step of at most ``max_step_down`` nodes that have been idle (and finished no
  task) for ``down_window_s``, when nothing is pending, the last decision is ``down_cooldown_s`` old,
  the queue stays at or above ``min_nodes`` and what the backlog wants, and the backlog is at most
  ``down_backlog_fraction`` of what the remaining nodes hold (hysteresis: shrinking never lands back
  on the scale-up threshold). A node that also serves a queue wanting more nodes is kept.
- **Over max_nodes** (the setting was lowered) the excess is drained at once, busy nodes included
  (draining lets them finish).

Cooldowns are separate (fast up, slow down, as Ray Serve's upscale/downscale delays and Celery's
keepalive); the windows make a short spike or a short lull change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from .config import QueuePolicy
from .decisions import MANUAL, SCALE_DOWN, SCALE_UP, Decision, ScaleRequest
from .observed import IDLE, SERVING_STATES, NodeInfoView, SchedulerStatsView
from .scale_in import choose_nodes_to_drain, is_managed

NO_CHANGE = "none"


@dataclass
class QueueMemory:
    """What the policy remembers about one queue between evaluations."""

    above_since: float | None = None
    """First evaluation of the current run in which the queue wanted more nodes than it had."""
    last_up: float | None = None
    last_down: float | None = None
    held: str = ""
    """Why the queue wants a change that is not being made (window, cooldown, max), for the API."""
    wanted: int = 0
    nodes: int = 0


@dataclass
class IdleRecord:
    since: float
    tasks_done: int


@dataclass
class PolicyMemory:
    """The policy's whole remembered state."""

    queues: dict[str, QueueMemory] = field(default_factory=dict)
    idle: dict[str, IdleRecord] = field(default_factory=dict)
    """node_id -> since when it has been seen idle without finishing a task in between."""

    def queue(self, name: str) -> QueueMemory:
        return self.queues.setdefault(name, QueueMemory())

    def idle_since(self) -> dict[str, float]:
        return {node_id: rec.since for node_id, rec in self.idle.items()}


@dataclass(frozen=True)
class QueueLook:
    """One queue as seen in one snapshot, and what it wants."""

    queue: str
    serving: tuple[NodeInfoView, ...]
    pending: int
    queued: int
    oldest_wait_s: float
    unschedulable: int
    wanted: int
    reasons: tuple[str, ...]

    @property
    def nodes(self) -> int:
        return len(self.serving) + self.pending


def observe_idle(nodes: list[NodeInfoView] | tuple[NodeInfoView, ...], now: float, memory: PolicyMemory) -> None:
    """Update since when each node has been idle. A node that finished a task between two looks
    (``tasks_done`` moved) starts again: sampled every few seconds, a node running short tasks back
    to back can look idle at every sample without ever being idle."""
    seen: set[str] = set()
    for node in nodes:
        if node.state != IDLE:
            continue
        seen.add(node.node_id)
        record = memory.idle.get(node.node_id)
        if record is None or record.tasks_done != node.tasks_done:
            memory.idle[node.node_id] = IdleRecord(now, node.tasks_done)
    for node_id in list(memory.idle):
        if node_id not in seen:
            del memory.idle[node_id]


def look_at(
    queue: str, policy: QueuePolicy, stats: SchedulerStatsView, pending: int, leaving: Collection[str] = ()
) -> QueueLook:
    """How many nodes ``queue`` has and wants, with the reasons it wants more (pure).

    ``leaving``: nodes already asked to drain, which the snapshot may not show as draining yet."""
    qs = stats.queues.get(queue)
    queued = qs.queued if qs is not None else 0
    wait = (qs.oldest_queued_age_s or 0.0) if qs is not None else 0.0
    unschedulable = qs.unschedulable if qs is not None else 0
    serving = tuple(
        n for n in stats.nodes if queue in n.queues and n.state in SERVING_STATES and n.node_id not in leaving
    )
    nodes = len(serving) + pending
    wanted = math.ceil(queued / policy.queued_per_node) if queued > 0 else 0
    reasons: list[str] = []
    if wanted > nodes:
        reasons.append(f"{queued} queued > {policy.queued_per_node * nodes:g}")
    if pending == 0 and queued > 0 and wanted <= nodes:
        if policy.max_wait_s > 0 and wait > policy.max_wait_s:
            wanted = nodes + 1
            reasons.append(f"oldest task waited {wait:.0f} s > {policy.max_wait_s:g} s")
        elif unschedulable > 0:
            wanted = nodes + 1
            reasons.append(f"{unschedulable} queued tasks no online node can run")
    if nodes < policy.min_nodes:
        wanted = max(wanted, policy.min_nodes)
        reasons.append(f"{nodes} nodes < min_nodes={policy.min_nodes}")
    return QueueLook(queue, serving, pending, queued, wait, unschedulable, wanted, tuple(reasons))


def evaluate(
    policies: Mapping[str, QueuePolicy],
    stats: SchedulerStatsView,
    now: float,
    memory: PolicyMemory,
    *,
    pending: Mapping[str, int] | None = None,
    headroom: Mapping[str, int | None] | None = None,
    leaving: Collection[str] = (),
) -> list[Decision]:
    """The decisions to make at ``now``, given the snapshot ``stats``.

    ``pending``: instances launched per queue that have not registered yet. ``headroom``: how many
    more instances the queue's providers can start (None or absent = no known limit). ``leaving``:
    nodes already asked to drain (they no longer count, and are not chosen again).
    """
    pending = pending or {}
    headroom = headroom or {}
    observe_idle(list(stats.nodes), now, memory)
    looks = {q: look_at(q, p, stats, max(0, pending.get(q, 0)), leaving) for q, p in policies.items()}
    wanting = {q for q, look in looks.items() if look.wanted > look.nodes}
    decisions: list[Decision] = []
    taken: set[str] = set()
    for queue, look in looks.items():
        mem = memory.queue(queue)
        mem.wanted, mem.nodes, mem.held = look.wanted, look.nodes, ""
        policy = policies[queue]
        decision = _over_max(look, policy, mem, now, memory, taken)
        if decision is None and queue in wanting:
            decision = _scale_up(look, policy, mem, now, headroom.get(queue))
        elif decision is None:
            mem.above_since = None
            decision = _scale_down(look, policy, mem, now, memory, wanting, taken)
        if decision is not None:
            decisions.append(decision)
            taken.update(decision.drain)
    return decisions


def _scale_up(look: QueueLook, policy: QueuePolicy, mem: QueueMemory, now: float, room: int | None) -> Decision | None:
    if mem.above_since is None:
        mem.above_since = now
    elapsed = now - mem.above_since
    below_min = look.nodes < policy.min_nodes
    from_zero = not look.serving and look.pending == 0 and look.queued > 0
    if not (below_min or from_zero) and elapsed < policy.up_window_s:
        mem.held = f"backlog above threshold for {elapsed:.0f} of {policy.up_window_s:g} s"
        return None
    if mem.last_up is not None and now - mem.last_up < policy.up_cooldown_s:
        mem.held = f"scale-up cooldown ({now - mem.last_up:.0f} of {policy.up_cooldown_s:g} s)"
        return None
    limits = [(look.wanted - look.nodes, "")]  # first, so a tie means "not capped"
    limits += [(policy.max_step_up, f"max_step_up={policy.max_step_up}")]
    limits += [(policy.max_nodes - look.nodes, f"max_nodes={policy.max_nodes}")]
    if room is not None:
        limits.append((max(0, room), f"providers have room for {max(0, room)}"))
    count, cap = min(limits, key=lambda item: item[0])
    if count <= 0:
        mem.held = f"at {cap}"
        return None
    why = "; ".join(look.reasons)
    if not (below_min or from_zero):
        why += f" for {elapsed:.0f} s"
    elif from_zero and not below_min:
        why += ", no node serves the queue"
    if cap:
        why += f" (capped by {cap})"
    mem.last_up = now
    return Decision(look.queue, SCALE_UP, count, f"scale_up queue={look.queue} +{count}: {why}", now)


def _over_max(
    look: QueueLook, policy: QueuePolicy, mem: QueueMemory, now: float, memory: PolicyMemory, taken: set[str]
) -> Decision | None:
    """``max_nodes`` was lowered below what runs: drain the excess now, windows and cooldowns aside."""
    serving = [n for n in look.serving if n.node_id not in taken]
    excess = len(serving) - policy.max_nodes
    if excess <= 0:
        return None
    chosen = choose_nodes_to_drain(serving, excess, idle_since=memory.idle_since(), now=now, providers=policy.providers)
    if not chosen:
        return None
    mem.last_down = now
    why = f"{len(serving)} nodes > max_nodes={policy.max_nodes}"
    reason = f"scale_down queue={look.queue} -{len(chosen)}: {why}"
    return Decision(look.queue, SCALE_DOWN, len(chosen), reason, now, tuple(n.node_id for n in chosen))


def _scale_down(
    look: QueueLook,
    policy: QueuePolicy,
    mem: QueueMemory,
    now: float,
    memory: PolicyMemory,
    wanting: set[str],
    taken: set[str],
) -> Decision | None:
    serving = [n for n in look.serving if n.node_id not in taken]
    idle_since = memory.idle_since()
    if look.pending > 0 or not serving:
        return None
    last = max((t for t in (mem.last_up, mem.last_down) if t is not None), default=None)
    limit = min(policy.max_step_down, len(serving) - max(policy.min_nodes, look.wanted))
    if limit <= 0:
        return None
    candidates = [
        n
        for n in serving
        if n.state == IDLE
        and is_managed(n)
        and now - idle_since.get(n.node_id, now) >= policy.down_window_s
        and not (set(n.queues) & wanting)
    ]
    if not candidates:
        return None
    if last is not None and now - last < policy.down_cooldown_s:
        mem.held = f"scale-down cooldown ({now - last:.0f} of {policy.down_cooldown_s:g} s)"
        return None
    count = 0
    for k in range(1, limit + 1):
        if look.queued <= policy.down_backlog_fraction * policy.queued_per_node * (len(serving) - k):
            count = k
    if count == 0:
        mem.held = f"{look.queued} queued: above the scale-in threshold"
        return None
    chosen = choose_nodes_to_drain(
        candidates, count, idle_since=idle_since, now=now, providers=policy.providers, idle_only=True
    )
    idle_for = min(now - idle_since.get(n.node_id, now) for n in chosen)
    threshold = policy.down_backlog_fraction * policy.queued_per_node * (len(serving) - len(chosen))
    reason = (
        f"scale_down queue={look.queue} -{len(chosen)}: {len(chosen)} of {len(serving)} nodes idle for "
        f"{idle_for:.0f} s, {look.queued} queued <= {threshold:g}"
    )
    mem.last_down = now
    return Decision(look.queue, SCALE_DOWN, len(chosen), reason, now, tuple(n.node_id for n in chosen))


def plan_manual(
    queue: str,
    request: ScaleRequest,
    policy: QueuePolicy,
    stats: SchedulerStatsView,
    now: float,
    memory: PolicyMemory,
    *,
    pending: int = 0,
    headroom: int | None = None,
    leaving: Collection[str] = (),
) -> Decision:
    """An operator's ``=N``/``+N``/``-N`` for ``queue``, kept within ``min_nodes``..``max_nodes`` (else
    the policy would undo it at the next evaluation), and counted as a decision for the cooldowns.

    A decision with ``action == "none"`` and ``count == 0`` says why nothing changes.
    """
    observe_idle(list(stats.nodes), now, memory)
    look = look_at(queue, policy, stats, pending, leaving)
    mem = memory.queue(queue)
    current = look.nodes
    target = request.target(current)
    clamped = min(max(target, policy.min_nodes), policy.max_nodes)
    note = "" if clamped == target else f", kept within min_nodes={policy.min_nodes}..max_nodes={policy.max_nodes}"
    prefix = f"manual {request} ({current} -> {clamped} nodes{note})"
    if clamped > current:
        count = clamped - current
        if headroom is not None and headroom < count:
            count = max(0, headroom)
            prefix += f", providers have room for {count}"
        if count > 0:
            mem.last_up = now
            return Decision(queue, SCALE_UP, count, f"scale_up queue={queue} +{count}: {prefix}", now, source=MANUAL)
    elif clamped < current:
        chosen = choose_nodes_to_drain(
            list(look.serving), current - clamped, idle_since=memory.idle_since(), now=now, providers=policy.providers
        )
        if chosen:
            mem.last_down = now
            ids = tuple(n.node_id for n in chosen)
            reason = f"scale_down queue={queue} -{len(ids)}: {prefix}"
            if len(ids) < current - clamped:
                reason += f", only {len(ids)} nodes the autoscaler started can be drained"
            return Decision(queue, SCALE_DOWN, len(ids), reason, now, ids, source=MANUAL)
        prefix += ", no node the autoscaler started can be drained"
    return Decision(queue, NO_CHANGE, 0, f"no change queue={queue}: {prefix}", now, source=MANUAL)
