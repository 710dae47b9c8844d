"""The scheduler's node side: HELLO/HEARTBEAT/READY/PROGRESS/RESULT/FAILED/CANCELLED/BYE, and draining.
What then happens to a task whose attempt failed or whose node was lost is :mod:`.requeue`'s.

Rules (``docs/protocol.md`` sections 5, 6 and 8): any message counts as liveness; a finished task is
also the node's next credit (unless the outcome says ``ready: false``); PROGRESS and FAILED count only
from the node holding the current attempt; the first RESULT completes a task and later ones are
duplicates; a node that reconnects while running a task names it in its HELLO and keeps it; a task a
node never started (``FAILED handed_back``, or a BYE that does not name it) is re-queued uncharged.

Self-healing (no state may be lost for good to one dropped message or one reconnect): an idle node
the scheduler holds no credit from is asked for READY in a HEARTBEAT; a drained node stays drained
when it re-registers and is told DRAIN again while it says it is not draining; a retry prefers a
node other than those the task failed on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..journal import states
from ..journal.records import TaskRecord
from ..journal.task_store import TaskStore
from ..wire import protocol as p
from ..wire.shared_memory import SharedMemoryRefused, SharedRegion
from .event_publishing import EventPublisher
from .node_registry import NodeEntry, holds, reported_models
from .outbox import Outbox, send_ctrl
from .requeue import Requeue
from .routing import allowed_queues
from .scheduler_state import SchedulerState

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

MAX_UNCHARGED_DISPATCHES = 20
"""Hand-backs are free (the node never started the task) only while the task has had fewer than this
many dispatches that were not charged (``dispatches - attempts``: hand-backs, undeliverable TASKs,
restart refunds). Real nodes hand back rarely; a buggy one would otherwise re-queue a task for ever."""


NodeHandler = Callable[[bytes, p.Message, float, Outbox], None]
"""``(identity, message, now, outbox)``: one control-socket message from a node."""


class NodeHandlers:
    """Handlers for messages from nodes (control socket, plus READY on the queue sockets), and the
    drain the rest of the scheduler asks of the node side.

    Works on the shared :class:`~.scheduler_state.SchedulerState` (node registry, journal, counters),
    reports task changes to the :class:`~.event_publishing.EventPublisher` and leaves unfinished
    attempts and lost nodes to :class:`~.requeue.Requeue`; it never sends."""

    def __init__(self, state: SchedulerState, events: EventPublisher, requeue: Requeue) -> None:
        self.state = state
        self.events = events
        self.requeue = requeue
        self.nodes = state.nodes
        """The node registry (``state.nodes``): node id -> :class:`NodeEntry`."""
        # The parts of the shared state this side changes, by their short names.
        self._ctrl_owner = state.ctrl_owner
        self._drained = state.drained
        self._refunded = state.refunded

    def handlers(self) -> dict[str, NodeHandler]:
        """The control-socket commands this side answers (READY comes on queue sockets: ``on_ready``)."""
        return {
            p.HELLO: self._on_hello,
            p.HEARTBEAT: self._on_heartbeat,
            p.PROGRESS: self._on_progress,
            p.RESULT: self._on_result,
            p.FAILED: self._on_failed,
            p.CANCELLED: self._on_cancelled,
            p.BYE: self._on_bye,
        }

    def _store(self) -> TaskStore:
        return self.state.journal()

    def _count(self, name: str, n: int = 1) -> None:
        self.state.counters.count(name, n)

    def _garbage(self, why: str) -> None:
        self.state.counters.garbage(why)

    def _foreign(self, why: str) -> None:
        self.state.counters.foreign(why)

    def _peer_key(self, queue: str | None, ident: bytes) -> str | None:
        """The CURVE key of the sender (``queue`` None: it wrote on the control socket)."""
        return self.state.peer_key(queue, ident)

    def _send_unknown(self, outbox: Outbox, ident: bytes) -> None:
        """Tell a peer the scheduler has no online record of it, so it says HELLO again."""
        send_ctrl(outbox, ident, p.UNKNOWN, {"reason": "node is not registered; send HELLO"})

    def _node_for(self, ident: bytes, msg: p.Message, outbox: Outbox, now: float) -> NodeEntry | None:
        """The registered, online node that sent ``msg``; otherwise answer UNKNOWN and return None."""
        node = self.nodes.get(msg.header["node_id"])
        if node is None or node.offline:
            self._send_unknown(outbox, ident)
            return None
        if node.peer_key != self._peer_key(None, ident):
            self._foreign(f"{msg.command} as node {node.node_id} from a peer with another key")
            return None
        if node.ctrl_ident != ident:
            self._ctrl_owner.pop(node.ctrl_ident, None)
            node.ctrl_ident = ident
            self._ctrl_owner[ident] = node.node_id
        node.last_seen = now
        return node

    def _on_hello(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        h = msg.header
        node_id = h["node_id"]
        caps = h["capabilities"]
        old = self.nodes.get(node_id)
        key = self._peer_key(None, ident)
        if old is not None and old.peer_key != key:
            # Node ids are chosen by nodes: a second key must not take over one (and its tasks).
            self._foreign(f"HELLO as node {node_id}, which registered with another key")
            return
        running = running_tasks(h)
        if old is not None:
            for task_id, held in list(old.held.items()):
                if (task_id, held.attempt) not in running:
                    # The node restarted (or no longer runs what we handed it): that attempt is lost.
                    self.requeue.lose_task(old, task_id, now, f"node {old.name} re-registered without the task")
        if old is not None:
            self._ctrl_owner.pop(old.ctrl_ident, None)
            old.drop_shared()  # mapped again below, if it still offers it
        requested = caps.get("queues_requested") or h.get("queues_requested") or []
        if not isinstance(requested, list):
            requested = []
        allowed, rejected = allowed_queues(caps, requested, self.state.dcfg)
        node = NodeEntry(
            node_id=node_id,
            name=str(h.get("name") or node_id),
            ctrl_ident=ident,
            capabilities=caps,
            allowed=allowed,
            rejected=rejected,
            version=h.get("version"),
            pid=h.get("pid") if isinstance(h.get("pid"), int) else None,
            loaded_model=h.get("loaded_model"),
            last_seen=now,
            registered_at=now,
            idle_since=now,
            ready_asked_at=now,
            tasks_done=old.tasks_done if old is not None else 0,
            reported_models=reported_models(h, ()),
            peer_key=key,
        )
        if old is None:
            self._drained.discard(node_id)  # a node the scheduler forgot starts afresh
        self.nodes[node_id] = node
        self._ctrl_owner[ident] = node_id
        queues = {q: self.state.endpoints["queues"][q] for q in self.state.queues if q in allowed}
        welcome: dict[str, Any] = {
            "node_id": node_id,
            "queues": queues,
            "rejected": rejected,
            "heartbeat_interval_s": self.state.interval,
            "liveness": self.state.liveness,
        }
        if "shared_memory" in h:
            # minor 4: the node offered its shared memory; say whether this scheduler could map it
            welcome["shared_memory"] = self._attach_shared(node, h)
        advertised = self.state.advertised
        if advertised is not None:
            # minor 3: a node that came in through the advertised address joins these instead
            granted = {q: advertised["queues"][q] for q in queues}
            welcome["advertised"] = {"control": advertised["control"], "queues": granted}
        send_ctrl(outbox, ident, p.WELCOME, welcome)
        log.info("node %s (%s) joined: queues %s, rejected %s", node.name, node_id, sorted(allowed), rejected)
        if node_id in self._drained:
            # Drained before it reconnected: the drain still holds (sent after WELCOME, same socket).
            log.info("node %s (%s) was drained before it re-registered: DRAIN again", node.name, node_id)
            self._send_drain(node, now, outbox)
        slots = task_slots(h, node) if node.shared is not None else {}
        for task_id, attempt in running:
            self._resume(node, task_id, attempt, now, outbox, slots.get(task_id))

    def _attach_shared(self, node: NodeEntry, hello: dict[str, Any]) -> bool:
        """Map the shared memory a node offered (``wire.shared_memory``); False (bytes on the wire)
        when it is off here or cannot be mapped, which is the normal case for a node on another host."""
        if self.state.dcfg.shared_memory_mb <= 0:
            return False
        try:
            node.shared = SharedRegion.attach(hello.get("shared_memory"), node.pid)
        except SharedMemoryRefused as exc:  # every failure to map it is one (wire/shared_memory.py)
            log.info("node %s (%s): no shared memory: %s", node.name, node.node_id, exc)
            return False
        if node.shared.slots < node.slots:
            log.info("node %s (%s): its shared memory has fewer slots than it holds tasks", node.name, node.node_id)
            node.drop_shared()
            return False
        log.info("node %s (%s) shares memory with the scheduler", node.name, node.node_id)
        return True

    def _resume(
        self, node: NodeEntry, task_id: str, attempt: int, now: float, outbox: Outbox, slot: int | None = None
    ) -> None:
        """A (re)registering node says it is still running ``attempt`` of ``task_id``.

        It keeps the task when that attempt is still the task's current one: processing on this
        node (a reconnect the scheduler had not noticed yet), or queued again but not dispatched
        since (the node was declared lost, or the scheduler restarted and recovered it). Otherwise
        (re-dispatched elsewhere, finished, cancelled, unknown) the node is told to CANCEL it. Either
        way the node holds the task (a slot taken, and its shared-memory ``slot``) until it reports the
        outcome."""
        node.hold(task_id, attempt, now, slot)
        store = self._store()
        rec = store.get(task_id)
        if rec is not None and 0 < attempt <= rec.dispatches and not self._dispatched_to(rec, attempt, node):
            # A claim on someone else's attempt: the task stays as it is; the claimer is told to cancel.
            self._foreign(f"node {node.node_id} claims task {task_id} attempt {attempt}, not dispatched to it")
        elif rec is not None and rec.dispatches == attempt:
            if rec.status == states.PROCESSING and rec.node_id == node.node_id:
                log.info("node %s reconnected and still runs task %s (attempt %d)", node.name, task_id, attempt)
                return
            if rec.status == states.QUEUED:
                rec = store.reattach(task_id, node.node_id, charge=task_id in self._refunded)
                self._refunded.discard(task_id)
                self._count("reattached")
                log.info("node %s came back still running task %s (attempt %d): kept", node.name, task_id, attempt)
                self.events.record(rec)
                return
        log.info("node %s runs task %s (attempt %d), which is no longer its own: cancel", node.name, task_id, attempt)
        send_ctrl(outbox, node.ctrl_ident, p.CANCEL, {"task_id": task_id, "attempt": attempt})

    def _on_heartbeat(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        node = self._node_for(ident, msg, outbox, now)
        if node is None:
            return
        h = msg.header
        node.reported_models = reported_models(h, node.reported_models)
        if "loaded_model" in h and not node.held:
            # While it holds a task the node may still be loading the model we predicted at
            # dispatch; a heartbeat sent before the TASK arrived would undo that prediction.
            node.loaded_model = h.get("loaded_model")
        state = h.get("state")
        if state == p.NODE_DRAINING:
            node.draining = True
            node.ready.clear()
        elif node.draining and now - node.drain_sent_at >= self.state.liveness_window:
            # We drained it, yet it still says it is not draining a liveness window later: our DRAIN
            # was lost. (A heartbeat that merely crossed the DRAIN is let be.)
            log.info("node %s (%s) reports %r while drained: DRAIN again", node.name, node.node_id, state)
            self._send_drain(node, now, outbox)
        named = heartbeat_tasks(h)
        if node.held and named is not None:
            window = self.state.liveness_window
            lost = [t for t, held in node.held.items() if t not in named and now - held.dispatched_at > window]
            for task_id in lost:
                # The node does not hold it, long after we handed it over: the TASK or its outcome
                # was lost (e.g. a connection was re-established). Retry it elsewhere.
                self.requeue.lose_task(node, task_id, now, f"node {node.name} reported it without the task")
            if lost and len(named) < node.slots:
                # Their slots are free, and the node says it has one free: credit (not when draining).
                node.make_ready(now)
        elif state == p.NODE_IDLE and h.get("task_id") is None:
            self._ask_for_credit(node, now, outbox)

    def _ask_for_credit(self, node: NodeEntry, now: float, outbox: Outbox) -> None:
        """An idle node we hold no credit from is asked to send READY again (``HEARTBEAT send_ready``).

        Credit can be lost without the node knowing: a queue socket that reconnected on its own (a
        short network cut) has a new identity here, so the next TASK bounced (``Dispatcher``'s undo) and
        the credit went with it, or a READY was dropped. A node sends READY once per idle period,
        so without this it would heartbeat "idle" forever and never get work. At most once per
        interval, never in the first interval after HELLO (its first READY may still be on the way);
        a node that cannot work yet (its inference process restarting) ignores the request."""
        if node.held or node.draining or node.ready or not node.allowed:
            return
        if now - node.ready_asked_at < self.state.interval:
            return
        node.ready_asked_at = now
        send_ctrl(outbox, node.ctrl_ident, p.HEARTBEAT, {"send_ready": True})

    def on_ready(self, queue_name: str, ident: bytes, msg: p.Message, now: float) -> None:
        node = self.nodes.get(msg.header["node_id"])
        if node is None or node.offline:
            self._count("stale_messages")  # it will HELLO again after its control socket hears UNKNOWN
            return
        if node.peer_key != self._peer_key(queue_name, ident):
            self._foreign(f"READY as node {node.node_id} from a peer with another key")  # would steal its TASKs
            return
        if queue_name not in node.allowed:
            self._count("stale_messages")
            return
        node.last_seen = now
        node.queue_idents[queue_name] = ident
        if len(node.held) >= node.slots or node.draining:
            return  # credit sent before it got its last task (or while draining): not a credit now
        if not node.ready:
            node.idle_since = now
        node.ready.add(queue_name)

    def _on_progress(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        node = self._node_for(ident, msg, outbox, now)
        if node is None:
            return
        h = msg.header
        rec = self._current_attempt(node, h["task_id"], h["attempt"])
        if rec is None:
            return
        percent = max(0.0, min(100.0, float(h["percent"])))
        step = h.get("step") if isinstance(h.get("step"), int) else None
        if percent >= 100.0 and step is None:
            return  # "done" without a step says nothing the RESULT right behind it will not say
        total = h.get("total_steps") if isinstance(h.get("total_steps"), int) else None
        self._store().set_progress(rec.id, percent, step, total)
        self.events.record(rec, progress=percent, step=step)

    def _on_result(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        h = msg.header
        store = self._store()
        node = self.nodes.get(h["node_id"])
        key = self._peer_key(None, ident)
        if node is not None and node.peer_key != key:
            self._foreign(f"RESULT as node {node.node_id} from a peer with another key")
            return
        known = node is not None and not node.offline
        if known:
            self._node_for(ident, msg, outbox, now)
        else:
            # Keep the work of a node we lost track of, but make it register again.
            self._send_unknown(outbox, ident)
        blobs = msg.blob_map()
        task_id = h["task_id"]
        if "shared" in h:
            # minor 4: the body is in the node's shared memory, in the slot this attempt was given
            if blobs:
                self._garbage(f"RESULT for {task_id} names a shared body and carries blobs")
                return
            body = shared_body(node if known else None, task_id, h["attempt"], h["shared"])
            if body is None:
                # Not readable as this attempt's (the node was lost and registered again, or the
                # scheduler restarted): the node re-sends it with the body after its next WELCOME.
                self._count("stale_messages")
                return
            blobs = {"body": body}
        if set(blobs) != {"body"}:
            self._garbage(f"RESULT for {task_id} must carry exactly one blob named 'body'")
            return
        rec = store.get(task_id)
        if rec is None:
            if store.is_expired(task_id):
                self._count("duplicates")
            else:
                # An attempt the journal never recorded: its TASK left before a commit that failed
                # or never happened (the scheduler died first; see the service's docstring).
                self._count("stale_messages")
            return
        if h["attempt"] > rec.dispatches:
            self._count("stale_messages")  # an attempt we never handed out
            return
        if not self._owned_by(rec, h["attempt"], h["node_id"], key):
            self._foreign(f"RESULT for task {task_id} attempt {h['attempt']} from node {h['node_id']}, not its own")
            return
        if node is not None and holds(node, task_id, h["attempt"]):
            node.tasks_done += 1
            node.grant_implied_credit(now, h["task_id"], ready=h.get("ready") is not False)
        if rec.terminal:
            store.add_duplicate(task_id)
            self._count("duplicates")
            return
        holder = self.nodes.get(rec.node_id) if rec.node_id else None
        rec = store.complete(
            task_id,
            mimetype=h["mimetype"],
            headers={str(k): str(v) for k, v in h["headers"].items()},
            body=blobs["body"],
            node_id=h["node_id"],
            now=now,
        )
        self._count("completed")
        if holder is not None and task_id in holder.held and not holds(holder, task_id, h["attempt"]):
            # First result wins; the other attempt is now wasted work: stop it.
            send_ctrl(outbox, holder.ctrl_ident, p.CANCEL, {"task_id": task_id, "attempt": rec.dispatches})
        self.events.record(rec, body=blobs["body"])

    def _on_failed(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        h = msg.header
        node = self.nodes.get(h["node_id"])
        if node is None or node.offline:
            self._send_unknown(outbox, ident)
            return  # its task was already re-queued when it went offline
        if self._node_for(ident, msg, outbox, now) is None:
            return  # spoken for it by another key
        task_id = h["task_id"]
        if holds(node, task_id, h["attempt"]):
            node.grant_implied_credit(now, h["task_id"], ready=h.get("ready") is not False)
        rec = self._current_attempt(node, task_id, h["attempt"])
        if rec is None:
            return
        if h.get("handed_back") is True:
            if rec.dispatches - rec.attempts < MAX_UNCHARGED_DISPATCHES:
                self.requeue.take_back(rec.id, f"node {node.name} handed it back ({h['error']})")
                return
            # Refunded this often already: a node that keeps handing it back is misbehaving, and a
            # refund would let the task bounce for ever. From here on it costs an attempt.
            log.warning(
                "task %s handed back again after %d free re-dispatches: charging it",
                rec.id,
                rec.dispatches - rec.attempts,
            )
        error = str(h["error"]) or "task failed"
        trace = h.get("traceback") if isinstance(h.get("traceback"), str) else None
        status = h.get("status") if isinstance(h.get("status"), int) else None
        log.warning(
            "task %s attempt %s failed on node %s: %s%s",
            task_id,
            h["attempt"],
            node.name,
            error,
            f"\n{trace.rstrip()}" if trace else "",  # the node's traceback, here in the scheduler's log too
            extra={"task_id": task_id, "queue": rec.queue, "node": node.node_id, "attempt": h["attempt"]},
        )
        if not h["retryable"]:
            rec = self._store().fail(task_id, error=error, traceback=trace, status=status or 400, now=now)
            self._count("failed")
            self.events.record(rec)
            return
        self.requeue.retry_or_fail(rec, now, error, trace, status)

    def _on_cancelled(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        node = self._node_for(ident, msg, outbox, now)
        if node is None:
            return
        h = msg.header
        if holds(node, h["task_id"], h["attempt"]):
            node.grant_implied_credit(now, h["task_id"], ready=h.get("ready") is not False)
        rec = self.state.processing_on(h["task_id"], node.node_id)
        if rec is None:
            self._judge_stray(node, h["task_id"], h["attempt"], p.CANCELLED, count_stale=False)
        else:
            # The node gave up on its own (e.g. draining with a deadline): run it again elsewhere.
            self.requeue.retry_or_fail(rec, now, f"node {node.name} cancelled the task", None, None)

    def _on_bye(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        node = self.nodes.get(msg.header["node_id"])
        if node is None:
            return
        if node.peer_key != self._peer_key(None, ident):
            self._foreign(f"BYE as node {node.node_id} from a peer with another key")
            return
        self._drained.discard(node.node_id)  # it left: the drain is done
        node.left = not node.offline
        reason = str(msg.header.get("reason") or "left")
        started = bye_tasks(msg.header)
        for held in [t for t in node.held if started is not None and t not in started]:
            # The node says it leaves without having started this task we sent it: the TASK was
            # still in flight, or waited unstarted (a stop raced the dispatch). Not the task's fault.
            node.release(held)
            if self.state.processing_on(held, node.node_id) is not None:
                self.requeue.take_back(held, f"node {node.name} left before starting it ({reason})")
        self.requeue.go_offline(node, now, f"node {node.name} left ({reason})")

    def drain(self, node: NodeEntry, outbox: Outbox) -> None:
        """Take the node's credit away for good and tell it (``DRAIN``); draining twice only answers.
        For an operator's or autoscaler's request (producer DRAIN, the handle, ``drain_node``).

        The drain is remembered by node id, so a node that re-registers (HELLO after a reconnect)
        stays draining and is told again, and a lost DRAIN is re-sent (see ``_on_heartbeat``)."""
        if not node.draining:
            log.info("draining node %s (%s)", node.name, node.node_id)
        node.ready.clear()
        self._drained.add(node.node_id)
        if not node.draining:
            self._send_drain(node, time.time(), outbox)

    def _send_drain(self, node: NodeEntry, now: float, outbox: Outbox) -> None:
        node.draining = True
        node.ready.clear()
        node.drain_sent_at = now
        send_ctrl(outbox, node.ctrl_ident, p.DRAIN, {})

    def _current_attempt(self, node: NodeEntry, task_id: str, attempt: int) -> TaskRecord | None:
        """The task's record if ``attempt`` is its current one, processing on ``node``: only that
        attempt's PROGRESS and FAILED count. Anything else is counted stale and gives None."""
        rec = self.state.processing_on(task_id, node.node_id)
        if rec is None or attempt != rec.dispatches:
            self._judge_stray(node, task_id, attempt, "report")
            return None
        return rec

    def _judge_stray(self, node: NodeEntry, task_id: str, attempt: int, what: str, *, count_stale: bool = True) -> None:
        """A report about an attempt this node does not hold now: stale (an old attempt of its own,
        a task that moved on) or foreign (that attempt was handed to another node)."""
        rec = self._store().get(task_id)
        if rec is not None and 0 < attempt <= rec.dispatches and not self._dispatched_to(rec, attempt, node):
            self._foreign(f"{what} for task {task_id} attempt {attempt} from node {node.node_id}, not its own")
        elif count_stale:
            self._count("stale_messages")

    def _dispatched_to(self, rec: TaskRecord, attempt: int, node: NodeEntry) -> bool:
        return self._owned_by(rec, attempt, node.node_id, node.peer_key)

    def _owned_by(self, rec: TaskRecord, attempt: int, node_id: str, key: str | None) -> bool:
        """Whether dispatch ``attempt`` of the task went to ``node_id`` holding ``key`` (journaled at
        dispatch, ``task_dispatches``). Attempts handed out before that table existed fall back to
        the task's current node."""
        owner = self._store().dispatch_owner(rec.id, attempt)
        if owner is None:
            return rec.node_id == node_id and attempt == rec.dispatches
        return owner == (node_id, key)


def _attempt_pair(task_id: Any, attempt: Any) -> tuple[str, int] | None:
    if isinstance(task_id, str) and task_id and isinstance(attempt, int) and not isinstance(attempt, bool):
        return task_id, attempt
    return None


def running_task(hello: dict[str, Any]) -> tuple[str, int] | None:
    """``(task_id, attempt)`` a HELLO says the node is still running first, or None (idle, or not said)."""
    return _attempt_pair(hello.get("task_id"), hello.get("attempt"))


def running_tasks(hello: dict[str, Any]) -> list[tuple[str, int]]:
    """Every ``(task_id, attempt)`` a HELLO says the node still runs: its ``tasks`` list (minor 2),
    else its one ``task_id``/``attempt``; malformed entries are ignored."""
    listed = hello.get("tasks")
    if isinstance(listed, list):
        pairs = (_attempt_pair(*e) if isinstance(e, list) and len(e) == 2 else None for e in listed)
        return [pair for pair in pairs if pair is not None]
    first = running_task(hello)
    return [first] if first is not None else []


def task_slots(hello: dict[str, Any], node: NodeEntry) -> dict[str, int]:
    """The shared-memory slot of each task a HELLO says the node still runs (``task_slots``, minor 4),
    so that a slot still in use there is not given to another task; malformed entries are ignored."""
    listed = hello.get("task_slots")
    region = node.shared
    if not isinstance(listed, dict) or region is None:
        return {}
    return {str(t): s for t, s in listed.items() if region.has_slot(s)}


def shared_body(node: NodeEntry | None, task_id: str, attempt: int, ref: Any) -> bytes | None:
    """The result a RESULT names in the node's shared memory (``{"slot", "length"}``), or None when
    it is not this attempt's to read: the node has no region mapped here, does not hold that attempt,
    or the slot is not the one the attempt was given. Bounds are checked by the region."""
    if node is None or node.shared is None or not isinstance(ref, dict):
        return None
    held = node.held.get(task_id)
    slot = ref.get("slot")
    if held is None or held.attempt != attempt or held.slot is None or held.slot != slot:
        return None
    try:
        return node.shared.read_output(held.slot, ref.get("length"))
    except ValueError:
        return None


def heartbeat_tasks(header: dict[str, Any]) -> set[str] | None:
    """The tasks a HEARTBEAT says the node holds, when it says so: its ``task_ids`` list (minor 2),
    or, from an idle node of an older minor, none. None: a busy node of an older minor, which names
    only one of them (nothing can be concluded about the others)."""
    listed = header.get("task_ids")
    if isinstance(listed, list):
        return {t for t in listed if isinstance(t, str)}
    if header.get("state") == p.NODE_IDLE and header.get("task_id") is None:
        return set()
    return None


def bye_tasks(header: dict[str, Any]) -> set[str] | None:
    """The tasks a BYE says the node started (its ``task_ids`` list, minor 2, or its one ``task_id``,
    null for none); None when it says nothing, and then every held task counts as started."""
    listed = header.get("task_ids")
    if isinstance(listed, list):
        return {t for t in listed if isinstance(t, str)}
    if "task_id" not in header:
        return None
    task_id = header["task_id"]
    return {task_id} if isinstance(task_id, str) else set()
