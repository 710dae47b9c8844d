"""Dispatch: pair runnable tasks (highest priority first, then oldest) with nodes that hold credit,
up to each node's free slots, and turn each pair into a journaled dispatch and a TASK in the outbox.

Which node gets which task is :func:`.routing.plan_dispatch` (pure); this module picks the candidate
tasks cheaply from the live index, holds dispatch back after a restart until interrupted tasks'
nodes had a chance to reclaim them, and undoes a dispatch whose TASK could not be delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from ..journal import states
from ..journal.records import TaskRecord
from ..journal.task_store import BlobMissing
from ..wire import protocol as p
from .event_publishing import EventPublisher
from .outbox import Out, Outbox
from .routing import IdleNode, WaitingTask, node_can_run, plan_dispatch, preferred_nodes
from .scheduler_state import SchedulerState

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

CANDIDATE_LOOKAHEAD = 8
"""Runnable tasks looked at per round beyond one per idle node (for the affinity choice)."""
CANDIDATE_SCAN_LIMIT = 2000
"""Queued tasks scanned per round at most, looking for ones an idle node can run."""


class Dispatcher:
    """Runs once per round, after the messages and timers, inside the round's transaction."""

    def __init__(self, state: SchedulerState, events: EventPublisher) -> None:
        self.state = state
        self.events = events
        self._held: set[str] = set()  # recovered tasks their node may still reclaim (dispatch waits)
        self._hold_until = 0.0

    def hold(self, task_ids: Iterable[str], until: float) -> None:
        """After a restart: interrupted tasks may still be running on their nodes, which reclaim them
        by naming them in their HELLO once they notice the restart. Dispatch waits (FIFO kept) until
        they all did, or ``until``."""
        self._held = set(task_ids)
        self._hold_until = until

    def dispatch(self, now: float, outbox: Outbox) -> None:
        """Pair runnable tasks with nodes that hold credit: one task per node and pass, and as many
        passes as the deepest node has free slots (one, unless a node advertises ``slots`` > 1), so
        each pass still spreads the work over every node with credit before any gets a second task."""
        if self._holding(now):
            return
        passes = max((n.free_slots for n in self.state.nodes.values() if n.has_credit()), default=0)
        for _ in range(passes):
            if not self._dispatch_pass(now, outbox):
                return

    def _dispatch_pass(self, now: float, outbox: Outbox) -> int:
        """One task at most to each node with credit; how many were dispatched."""
        state = self.state
        idle_nodes = {n.node_id: n for n in state.nodes.values() if n.has_credit()}
        if not idle_nodes:
            return 0
        queues = sorted({q for n in idle_nodes.values() for q in n.ready})
        store = state.journal()
        views = [
            IdleNode(
                node_id=n.node_id,
                queues=frozenset(n.ready),
                idle_since=n.idle_since,
                loaded_model=n.loaded_model,
                models=n.models,
                plugins=n.plugins,
                held=len(n.held),
            )
            for n in idle_nodes.values()
        ]
        failed_on = state.failed_on
        # Only a retry that failed somewhere needs the other online nodes (to wait for one of them).
        online = self._online_views() if failed_on else []
        tasks = candidates(store.live.runnable(now, queues), views, failed_on.get if failed_on else None, online)
        if not tasks:
            return 0
        counters = state.counters
        dispatched = 0
        for task, view in plan_dispatch(tasks, views, online):
            node = idle_nodes[view.node_id]
            ident = node.queue_idents.get(task.queue)
            if ident is None:  # pragma: no cover - credit implies a known identity
                continue
            try:
                files = store.inputs(task.task_id)
            except BlobMissing as exc:  # it can never run; the node keeps its credit for the next task
                log.error("task %s failed: %s", task.task_id, exc)
                counters.count("failed")
                self.events.record(store.fail(task.task_id, error=f"Task input lost: {exc}", status=500, now=now))
                continue
            rec = store.mark_processing(task.task_id, node.node_id, now, peer_key=node.peer_key)
            state.refunded.discard(rec.id)
            header = {
                "task_id": rec.id,
                "attempt": rec.dispatches,
                "kind": rec.kind,
                "name": rec.name,
                "form": rec.form,
                "submitter": rec.submitter,
                "queue": rec.queue,
                "blobs": list(files),
            }
            slot = node.free_shared_slot()
            if slot is not None:
                # minor 4: the node's shared memory gets the files (if they fit) and the slot its result
                refs = node.shared.write_inputs(slot, files)  # type: ignore[union-attr]  # a slot implies a region
                header["shared"] = {"slot": slot} if refs is None else {"slot": slot, "blobs": refs}
                if refs is not None:
                    header["blobs"] = []
                    files = {}
                counters.count("shared_dispatches")
            node.hold(rec.id, rec.dispatches, now, slot)
            if rec.kind == "inpaint":
                node.loaded_model = rec.name  # it will load it; affinity follows the model
            counters.count("dispatched")
            dispatched += 1
            outbox.append(
                Out(
                    ident,
                    p.encode(p.TASK, header, list(files.values())),
                    queue=task.queue,
                    on_fail=self._undelivered(node.node_id, rec.id, task.queue),
                    early=True,  # the node starts while the commit writes the upload (service docstring)
                )
            )
            self.events.record(rec)
        return dispatched

    def _holding(self, now: float) -> bool:
        """Whether dispatch still waits for nodes to reclaim tasks interrupted by a restart."""
        if not self._held:
            return False
        live = self.state.journal().live.records
        self._held = {t for t in self._held if (r := live.get(t)) is not None and r.status == states.QUEUED}
        if self._held and now < self._hold_until:
            return True
        self._held.clear()
        return False

    def _online_views(self) -> list[IdleNode]:
        """Every online, non-draining node as routing sees it (``queues`` = the queues it was
        granted): a retry waits for one of them rather than return to a node it failed on."""
        return [
            IdleNode(n.node_id, frozenset(n.allowed), n.idle_since, models=n.models, plugins=n.plugins)
            for n in self.state.nodes.values()
            if not (n.offline or n.draining)
        ]

    def _undelivered(self, node_id: str, task_id: str, queue: str) -> Callable[[], None]:
        def undo() -> None:
            # The node's queue socket vanished before the TASK left (e.g. it reconnected after a
            # network cut and has a new identity): the attempt never started. The node keeps no
            # credit until it sends READY from the new socket; it is asked to at its next idle
            # heartbeat (``NodeHandlers._ask_for_credit``), so it cannot stay idle for good.
            node = self.state.nodes.get(node_id)
            if node is not None and node.release(task_id) is not None:
                node.ready.clear()
                node.queue_idents.pop(queue, None)
            if self.state.processing_on(task_id, node_id) is not None:
                self.events.record(self.state.journal().undo_dispatch(task_id))

        return undo


def candidates(
    runnable: Iterator[TaskRecord],
    idle: list[IdleNode],
    failed_on: Callable[[str], frozenset[str]] | None = None,
    online: list[IdleNode] | None = None,
) -> list[WaitingTask]:
    """The first runnable tasks in dispatch order (``runnable`` yields them highest priority first,
    then oldest first) that some idle node can run, bounded by the idle credit.

    Enough for :func:`plan_dispatch` to give every idle node a task (plus a small look-ahead for
    its affinity choice), without building a view of every queued task each round. Tasks no idle
    node can run are skipped (they do not use up the window), up to a scan limit. ``failed_on``
    gives the nodes a retrying task failed on: a task that only such idle nodes could run, while
    another ``online`` node could run it later, is skipped too (``routing.preferred_nodes``), or a
    lone idle node would sit idle behind it.
    """
    # One idle node (the usual case under load: an outcome just freed it) simply gets the first task
    # it can run; the look-ahead only informs the affinity choice between several idle nodes.
    want = 1 if len(idle) == 1 else len(idle) + CANDIDATE_LOOKAHEAD
    chosen: list[WaitingTask] = []
    for scanned, rec in enumerate(runnable):
        if scanned >= CANDIDATE_SCAN_LIMIT:
            break
        avoid = failed_on(rec.id) if failed_on is not None else None
        if avoid:  # rare: a retry that failed somewhere
            task = WaitingTask(rec.id, rec.kind, rec.name, rec.queue, avoid=avoid)
            able = bool(preferred_nodes(task, [n for n in idle if node_can_run(n, task)], online or ()))
        else:
            task = WaitingTask(rec.id, rec.kind, rec.name, rec.queue)
            able = any(node_can_run(n, task) for n in idle)
        if able:
            chosen.append(task)
            if len(chosen) >= want:
                break
    return chosen
