"""What the scheduler's loop knows, turned into the handle's dataclasses (``handle.py``).

Pure functions over the node registry and the live task index, plus two small keepers the loop
feeds: :class:`RecentTasks` (a bounded ring of finished-task samples) and :class:`NodeWatch` (which
node changes became ``node_event``\\ s). All of it runs on the loop thread only.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping

from ..journal import states
from ..journal.live_tasks import LiveTasks
from ..journal.records import TaskRecord
from ..wire import protocol as p
from .handle import NODE_JOINING, NodeEvent, NodeInfo, QueueStats, TaskSample
from .node_registry import NodeEntry

RECENT_SAMPLES = 1000
"""Finished tasks kept for ``SchedulerStats.recent`` (oldest dropped first)."""


def node_state(node: NodeEntry) -> str:
    """``NodeEntry.state``, plus ``joining``: online, granted queues, but no READY on any yet."""
    state = node.state
    if state == p.NODE_IDLE and node.allowed and not node.queue_idents:
        return NODE_JOINING
    return state


def node_info(node: NodeEntry, now: float, live: LiveTasks | None) -> NodeInfo:
    caps = node.capabilities
    labels = caps.get("labels")
    device = caps.get("device")
    progress = None
    if node.current_task and live is not None:
        rec = live.get(node.current_task)
        if rec is not None and rec.status == states.PROCESSING:
            progress = rec.progress
    return NodeInfo(
        node_id=node.node_id,
        name=node.name,
        state=node_state(node),
        queues=tuple(sorted(node.allowed)),
        models=tuple(sorted(node.models or ())),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        device=device if isinstance(device, str) else None,
        current_task=node.current_task,
        progress=progress,
        heartbeat_age_s=None if node.offline else max(0.0, now - node.last_seen),
        loaded_models=node.reported_models,
        tasks_done=node.tasks_done,
        left=node.left,
        tasks=tuple(node.held),
        slots=node.slots,
    )


def queue_stats(
    queues: Iterable[str], live: LiveTasks, unschedulable: Mapping[str, str], now: float
) -> dict[str, QueueStats]:
    """Per queue: queued (and of those unschedulable), running, and the age of the oldest queued task.

    ``unschedulable``: task id -> queue of the queued tasks the last check found no node for."""
    oldest: dict[str, float] = {}
    for rec in live.records.values():
        if rec.status == states.QUEUED and rec.created_at < oldest.get(rec.queue, float("inf")):
            oldest[rec.queue] = rec.created_at
    stuck = Counter(unschedulable.values())
    return {
        name: QueueStats(
            name=name,
            queued=live.queued_count(name),
            running=live.processing_count(name),
            oldest_queued_age_s=max(0.0, now - oldest[name]) if name in oldest else None,
            unschedulable=stuck.get(name, 0),
        )
        for name in queues
    }


def task_sample(rec: TaskRecord) -> TaskSample:
    finished = rec.finished_at or 0.0
    started = rec.started_at
    return TaskSample(
        task_id=rec.id,
        queue=rec.queue,
        kind=rec.kind,
        name=rec.name,
        status=rec.status,
        wait_s=max(0.0, started - rec.created_at) if started else None,
        run_s=max(0.0, finished - started) if started and finished else None,
        finished_at=finished,
        node_id=rec.node_id,
        attempts=rec.attempts,
        error=rec.error,
    )


class RecentTasks:
    """The last :data:`RECENT_SAMPLES` finished tasks, oldest first."""

    def __init__(self, limit: int = RECENT_SAMPLES) -> None:
        self._samples: deque[TaskSample] = deque(maxlen=limit)

    def add(self, recs: Iterable[TaskRecord]) -> None:
        self._samples.extend(task_sample(rec) for rec in recs)

    def snapshot(self) -> tuple[TaskSample, ...]:
        return tuple(self._samples)


class NodeWatch:
    """Turns the registry's changes into node events: remembers the state each node was last
    reported in (and which registration, by its time), and says what changed since."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str]] = {}  # node id -> (registered_at, reported state)

    def changes(self, nodes: Mapping[str, NodeEntry], now: float, live: LiveTasks | None) -> list[NodeEvent]:
        events: list[NodeEvent] = []
        for node_id, node in nodes.items():
            state = node_state(node)
            seen = self._seen.get(node_id)
            if seen is not None and seen == (node.registered_at, state):
                continue
            self._seen[node_id] = (node.registered_at, state)
            before = seen[1] if seen is not None else None
            info = node_info(node, now, live)
            if before is None or (before == p.NODE_OFFLINE and state != p.NODE_OFFLINE):
                events.append(NodeEvent("joined", info, now))
            elif before == state:
                continue  # the same node registered again (a reconnect) in the state it was in
            if state == p.NODE_OFFLINE:
                events.append(NodeEvent("left" if node.left else "offline", info, now))
            elif state != NODE_JOINING:
                events.append(NodeEvent(state, info, now))
        for gone in [n for n in self._seen if n not in nodes]:
            del self._seen[gone]  # forgotten by the scheduler (long offline): it was reported offline
        return events
