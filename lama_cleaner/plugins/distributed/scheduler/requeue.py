"""What happens to a task whose attempt did not finish: retried with backoff, failed for good, or
re-queued uncharged when it never started; and to a node that is lost or leaves (offline, its task
re-queued with their attempts charged).

Used by the node handlers (FAILED, CANCELLED, BYE, a HELLO or HEARTBEAT that contradicts the
registry) and the timers (a node that went silent). The retry decision itself is
:func:`.retry_policy.next_retry` (pure); a retry avoids the nodes it failed on when it can
(``SchedulerState.failed_on``, read by dispatch through :func:`.routing.preferred_nodes`).
"""

from __future__ import annotations

import logging

from ..journal import states
from ..journal.records import TaskRecord
from .event_publishing import EventPublisher
from .node_registry import NodeEntry
from .retry_policy import next_retry, policy_for
from .scheduler_state import SchedulerState

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")


class Requeue:
    """Journal changes for unfinished attempts and lost nodes, reported to the event publisher."""

    def __init__(self, state: SchedulerState, events: EventPublisher) -> None:
        self.state = state
        self.events = events

    def take_back(self, task_id: str, why: str) -> None:
        """Re-queue a dispatched task that never started, refunding its attempt (protocol §4)."""
        rec = self.state.journal().undo_dispatch(task_id)
        self.state.counters.count("handed_back")
        log.info("task %s: %s; queued again, attempt not charged", task_id, why)
        self.events.record(rec)

    def requeue_orphans(self) -> None:
        """Queue again, uncharged, each task the journal has running on a registered node that does
        not hold it. Only a failed commit leaves such a task (the registry let it go with an outcome
        the journal never recorded): the node is done with it, and the loss was the journal's, so the
        attempt is refunded. A node the registry does not know (the scheduler restarted) is left to
        the restart's own recovery, which waits for it to reclaim its tasks."""
        store = self.state.journal()
        running = [rec for rec in store.live.records.values() if rec.status == states.PROCESSING]
        for rec in running:
            node = self.state.nodes.get(rec.node_id) if rec.node_id else None
            if node is None or rec.id in node.held:
                continue
            self.take_back(rec.id, f"its outcome on node {node.name} was lost with a journal commit that failed")

    def retry_or_fail(
        self, rec: TaskRecord, now: float, error: str, trace: str | None, status: int | None
    ) -> TaskRecord:
        """After a failed or lost attempt: back to queued with backoff, or failed for good."""
        state = self.state
        store = state.journal()
        not_before = next_retry(rec.attempts, policy_for(rec.kind, state.dcfg.retry), now)
        if not_before is None:
            message = error if rec.attempts <= 1 else f"{error} (after {rec.attempts} attempts)"
            rec = store.fail(rec.id, error=message, traceback=trace, status=status, now=now)
            state.failed_on.discard(rec.id)
            state.counters.count("failed")
        else:
            if rec.node_id:  # the retry should run elsewhere if it can (routing.preferred_nodes)
                state.failed_on.add(rec.id, rec.node_id, store.live.records)
            rec = store.retry(rec.id, not_before=not_before, error=error, traceback=trace)
            state.counters.count("retries")
        self.events.record(rec)
        return rec

    def lose_tasks(self, node: NodeEntry, now: float, why: str) -> None:
        """``node`` will finish none of its tasks: each is lost as :meth:`lose_task` loses one."""
        for task_id in list(node.held):
            self.lose_task(node, task_id, now, why)

    def lose_task(self, node: NodeEntry, task_id: str, now: float, why: str) -> None:
        """``node`` will not finish ``task_id``: re-queue it (attempt charged, backoff) or fail it."""
        if node.release(task_id) is None:
            return
        rec = self.state.processing_on(task_id, node.node_id)
        if rec is None:
            return  # already finished, cancelled, or re-dispatched elsewhere
        self.state.counters.count("requeued_on_node_loss")
        log.warning("task %s: %s; retrying", task_id, why)
        self.retry_or_fail(rec, now, why, None, None)

    def go_offline(self, node: NodeEntry, now: float, why: str) -> None:
        """The node left (BYE) or went silent: no credit, no identities, every task it held lost."""
        if node.offline:
            return
        node.offline = True
        node.offline_since = now
        if not node.left:
            self.state.counters.count("nodes_lost")
        node.ready.clear()
        node.queue_idents.clear()
        self.state.ctrl_owner.pop(node.ctrl_ident, None)
        log.warning("%s", why)
        self.lose_tasks(node, now, why)
        node.drop_shared()  # a late RESULT naming it is re-sent with its body after the node's next WELCOME
