"""The scheduler's periodic work, run once per round inside its transaction: node liveness (silent
nodes go offline, long-offline ones are forgotten), watcher expiry, heartbeats to nodes, retention
pruning of the journal, the unschedulable-task check, and after a failed commit the search for
tasks no node holds any more.
"""

from __future__ import annotations

import logging

from ..wire import protocol as p
from .event_publishing import EventPublisher
from .node_registry import NodeEntry
from .outbox import Outbox, send_ctrl
from .requeue import Requeue
from .scheduler_state import SchedulerState
from .unschedulable import UnschedulableWatch

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

PRUNE_BATCH = 200
"""Tasks (and blobs) removed per retention pass, so pruning never stalls the loop for long."""
OFFLINE_FORGET_S = 600.0
"""Offline nodes stay listed (state ``offline``) this long, then are forgotten."""


class Timers:
    """What runs on a clock rather than on a message; ``next_heartbeat`` bounds the loop's poll."""

    def __init__(
        self,
        state: SchedulerState,
        events: EventPublisher,
        requeue: Requeue,
        unschedulable: UnschedulableWatch,
    ) -> None:
        self.state = state
        self.events = events
        self.requeue = requeue
        self.unschedulable = unschedulable
        self.next_heartbeat = 0.0
        self._next_prune = 0.0

    def run(self, now: float, outbox: Outbox) -> None:
        state = self.state
        deadline = state.liveness_window
        for node in list(state.nodes.values()):
            if node.offline:
                if now - node.offline_since > max(OFFLINE_FORGET_S, deadline * 10):
                    del state.nodes[node.node_id]
                continue
            self._count_missed_heartbeats(node, now)
            if now - node.last_seen > deadline:
                why = f"node {node.name} silent for {now - node.last_seen:.1f}s"
                self.requeue.go_offline(node, now, why)
        self.events.expire_watchers(now, deadline)
        if state.orphans_possible:
            state.orphans_possible = False  # set again if this round's commit fails too
            self.requeue.requeue_orphans()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + state.interval
            for node in state.nodes.values():
                if not node.offline:
                    send_ctrl(outbox, node.ctrl_ident, p.HEARTBEAT, {})
        if now >= self._next_prune:
            self._prune(now)
        self.unschedulable.check(now)

    def _prune(self, now: float) -> None:
        """Drop finished tasks (and their blobs) older than ``retention_s``, a batch at a time."""
        retention = float(self.state.dcfg.retention_s)
        self._next_prune = now + min(300.0, max(1.0, retention / 10))
        tasks, blobs = self.state.journal().prune(now - retention, now, limit=PRUNE_BATCH)
        if max(tasks, blobs) >= PRUNE_BATCH:
            self._next_prune = now + 0.5  # more to do: continue soon, in small bites
        if tasks or blobs:
            self.state.counters.count("pruned_tasks", tasks)
            self.state.counters.count("pruned_blobs", blobs)
            log.info("retention: pruned %d finished tasks and %d blobs", tasks, blobs)
        self.events.forget_stale_waiters()

    def _count_missed_heartbeats(self, node: NodeEntry, now: float) -> None:
        """Count each heartbeat interval an online node stays silent past the first (a node sends
        at least one message per interval; the first interval is its normal lateness)."""
        missed = max(0, int((now - node.last_seen) / self.state.interval) - 1)
        if missed > node.heartbeats_missed:
            self.state.counters.count("heartbeats_missed", missed - node.heartbeats_missed)
        node.heartbeats_missed = missed
