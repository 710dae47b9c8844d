"""What the scheduler reports about itself: the ``stats()`` snapshot, the handle's ``SchedulerStats``
and the QUEUES rows.

All of it is built on the loop thread (it reads the node registry and the journal, which only the
loop may touch) and only on request: the per-state task counts scan the journal, which the loop
should not do every round. ``stats()`` callers on other threads read the last snapshot under a lock.
"""

from __future__ import annotations

import threading
from typing import Any

from ..journal import states
from ..wire import protocol as p
from .event_publishing import EventPublisher
from .handle import SchedulerStats
from .scheduler_state import SchedulerState
from .snapshots import node_info, queue_stats
from .unschedulable import UnschedulableWatch


class StatsReporter:
    """Builds the scheduler's reports from the shared state, the publisher (watchers, recent
    finished tasks) and the unschedulable watch (per-queue counts)."""

    def __init__(self, state: SchedulerState, events: EventPublisher, unschedulable: UnschedulableWatch) -> None:
        self.state = state
        self.events = events
        self.unschedulable = unschedulable
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"tasks": dict.fromkeys(states.STATES, 0), "queues": {}, "nodes": {}}

    def queue_rows(self) -> list[dict[str, Any]]:
        """Per queue: endpoint, queued and processing counts, its nodes by state (QUEUES, ``stats()``)."""
        state = self.state
        live = state.journal().live
        result = []
        for name in state.queues:
            per_state = dict.fromkeys(p.NODE_STATES, 0)
            for node in state.nodes.values():
                if name in node.allowed:
                    per_state[node.state] += 1
            result.append(
                {
                    "name": name,
                    "endpoint": state.endpoints.get("queues", {}).get(name),
                    "queued": live.queued_count(name),
                    "processing": live.processing_count(name),
                    "nodes": per_state,
                }
            )
        return result

    def refresh_snapshot(self, now: float) -> None:
        """Compute what ``stats()`` reports about tasks, queues and nodes (loop thread)."""
        state = self.state
        store = state.journal()
        node_states = dict.fromkeys(p.NODE_STATES, 0)
        for node in state.nodes.values():
            node_states[node.state] += 1
        snap = {
            "tasks": store.status_counts(),
            "queues": {q["name"]: q for q in self.queue_rows()},
            "nodes": node_states,
            "node_list": [n.public() for n in state.nodes.values()],
            "watchers": len(self.events.watchers),
            "endpoints": state.endpoints,
        }
        with self._lock:
            self._snapshot = snap

    def snapshot(self) -> dict[str, Any]:
        """The last snapshot (any thread), with every counter merged in."""
        with self._lock:
            snap = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._snapshot.items()}
        snap.update(self.state.counters.values())
        return snap

    def build(self, now: float) -> SchedulerStats:
        """The handle's :class:`~.handle.SchedulerStats` (loop thread)."""
        state = self.state
        live = state.journal().live
        nodes = sorted(state.nodes.values(), key=lambda n: n.registered_at)
        return SchedulerStats(
            time=now,
            counters=state.counters.handle_view(),
            queues=queue_stats(state.queues, live, self.unschedulable.stuck, now),
            nodes=tuple(node_info(n, now, live) for n in nodes),
            recent=self.events.recent.snapshot(),
        )
