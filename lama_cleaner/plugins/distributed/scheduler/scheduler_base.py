"""State and helpers shared by the scheduler's parts: the outbox, replies, events and counters.

:class:`~.service.Scheduler` is assembled from this base, :mod:`.node_handlers` (node messages
and the retry decisions) and :mod:`.producer_handlers` (producer requests). Handlers never send:
they append :class:`Out` messages and event dicts, which the loop sends after the journal commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ....tasks import TaskEvent
from ..config import DistributedConfig
from ..journal import states
from ..journal.records import TaskRecord
from ..journal.task_store import TaskStore
from ..wire import protocol as p
from ..wire.send import send_nowait
from .node_registry import DrainedNodes, FailedOn, NodeEntry
from .routing import ResourceClassOf
from .snapshots import RecentTasks

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

_STATES_WITH_ERROR = frozenset({states.FAILED, states.CANCELLED, states.QUEUED})


def _event_batches(events: list[dict[str, Any]]) -> list[list[bytes]]:
    """EVENTS frames for ``events``, split in halves only if a header would exceed what a receiver
    accepts (it would drop the whole batch as malformed); a lone event goes as a plain EVENT."""
    if len(events) == 1:
        return [p.encode(p.EVENT, events[0])]
    frames = p.encode(p.EVENTS, {"events": events})
    if len(frames[2]) <= p.MAX_HEADER_BYTES:
        return [frames]
    half = len(events) // 2
    return _event_batches(events[:half]) + _event_batches(events[half:])


@dataclass
class Out:
    """One message to send after the commit; ``on_fail`` runs if it cannot be delivered."""

    socket: zmq.Socket
    ident: bytes
    frames: list[bytes]
    on_fail: Callable[[], None] | None = None


class SchedulerBase:
    """The scheduler's shared state (set up by ``Scheduler.__init__``) and the helpers every part uses."""

    dcfg: DistributedConfig
    resource_class_of: ResourceClassOf
    interval: float
    liveness: int
    queues: list[str]
    endpoints: dict[str, Any]
    store: TaskStore | None
    nodes: dict[str, NodeEntry]
    on_event: Callable[[TaskEvent], None] | None
    events: Any
    emit_task_events: bool
    """An ``EventSink`` (``emit`` for ``task_event``, ``notify`` for the other hooks), or None."""
    _finished: list[TaskRecord]
    """Records that reached a terminal state this round (sampled for ``recent`` after the commit)."""
    _recent: RecentTasks
    _ctrl_owner: dict[bytes, str]
    _watchers: dict[bytes, tuple[str, float]]
    _batch_watchers: set[bytes]
    """Watchers whose last WATCH said ``batch_events: true`` (a subset of ``_watchers``)."""
    _control: zmq.Socket | None
    _queue_socks: dict[str, zmq.Socket]
    _lock: threading.Lock
    _counters: dict[str, int]
    _snapshot: dict[str, Any]
    _snapshot_at: float
    _events: list[dict[str, Any]]
    _done_waiters: dict[str, list[bytes]]
    _dones: list[tuple[TaskRecord, bytes | None]]
    _refunded: set[str]
    _garbage_logged: float
    _drained: DrainedNodes
    """Nodes drained on request, remembered across their re-registrations (until BYE or forgotten)."""
    _failed_on: FailedOn
    """Nodes each retrying task failed on, which its next dispatch avoids when it can."""
    _guard: Any
    """A ``security.peer_guard.PeerGuard`` when the sockets use CURVE (it knows each connection's key)."""
    _foreign_logged: float = 0.0

    def _store(self) -> TaskStore:
        assert self.store is not None
        return self.store

    def _ctrl(self) -> zmq.Socket:
        assert self._control is not None
        return self._control

    def _drain_node(self, node: NodeEntry, outbox: list[Out]) -> None:
        """Mark ``node`` draining and tell it (the node side, :class:`NodeMessages`, implements it)."""
        raise NotImplementedError

    def _send_ctrl(self, outbox: list[Out], ident: bytes, command: str, header: dict[str, Any]) -> None:
        outbox.append(Out(self._ctrl(), ident, p.encode(command, header)))

    def _reply(self, outbox: list[Out], ident: bytes, command: str, req_id: Any, header: dict[str, Any]) -> None:
        self._send_ctrl(outbox, ident, command, {"req_id": req_id, **header})

    def _reject(
        self,
        outbox: list[Out],
        ident: bytes,
        req_id: Any,
        status: int,
        code: str,
        message: str,
        retry_after: int | None = None,
    ) -> None:
        self._reply(
            outbox,
            ident,
            p.REJECTED,
            req_id,
            {"status": status, "code": code, "message": message, "retry_after": retry_after},
        )

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def _garbage(self, why: str) -> None:
        self._count("garbage_frames")
        now = time.time()
        if now - self._garbage_logged > 1.0:  # rate-limited: a flood of junk must not flood the log
            self._garbage_logged = now
            log.warning("dropped a malformed message: %s", why)

    def _reject_peer(self, reason: str) -> None:
        """A peer was refused: an unknown key at the handshake, or a revoked key's message (the
        security package logs it; this counts it). Called from the ZAP thread too, hence the lock."""
        self._count("rejected_peers")

    def _peer_key(self, sock: zmq.Socket | None, ident: bytes) -> str | None:
        """The CURVE key (Z85) of the connection ``ident`` on ``sock``; None without CURVE or inproc."""
        guard = self._guard
        return guard.key_of(sock, ident) if guard is not None else None

    def _foreign(self, why: str) -> None:
        """A node spoke for another node or about a task attempt that was not handed to it: dropped
        without touching the task, counted (``foreign_reports``) and logged (rate-limited)."""
        self._count("foreign_reports")
        now = time.time()
        if now - self._foreign_logged > 1.0:
            self._foreign_logged = now
            log.warning("refused a report from the wrong node: %s", why)

    def _info(self, rec: TaskRecord) -> dict[str, Any]:
        """``dataclasses.asdict(TaskInfo)`` of the record, built directly (this runs for every reply)."""
        return {
            "id": rec.id,
            "kind": rec.kind,
            "name": rec.name,
            "status": rec.status,
            "queue": rec.queue,
            "node": rec.node_id,
            "progress": rec.progress,
            "attempts": rec.attempts,
            "max_attempts": rec.max_attempts,
            "created_at": rec.created_at,
            "started_at": rec.started_at,
            "finished_at": rec.finished_at,
            "position": self._store().live.position(rec) if rec.status == states.QUEUED else None,
            "error": rec.error,
            "priority": rec.priority,
            "owner": rec.owner,
        }

    def _event(
        self, rec: TaskRecord, *, progress: float | None = None, step: int | None = None, body: bytes | None = None
    ) -> None:
        """Queue an event (the fields of :class:`TaskEvent`, in its order; sent as an EVENT or in the
        round's EVENTS) for after the commit, and a DONE for producers that asked for the result of a
        task that just finished (``body``: the result, when the caller has it at hand)."""
        if rec.status in states.TERMINAL:
            self._finished.append(rec)
            if rec.id in self._done_waiters:
                self._dones.append((rec, body))
        if not self._watchers and self.on_event is None and not (self.events is not None and self.emit_task_events):
            return  # nobody listens: skip building it
        status = rec.status
        self._events.append(
            {
                "task_id": rec.id,
                "status": status,
                "kind": rec.kind,
                "name": rec.name,
                "queue": rec.queue,
                "node": rec.node_id,
                "progress": progress if progress is not None else rec.progress,
                "step": step,
                "error": rec.error if status in _STATES_WITH_ERROR else None,
                "submitter": rec.submitter,
                "attempts": rec.attempts,
                "at": time.time(),
            }
        )

    def _done_frames(self, rec: TaskRecord, body: bytes | None) -> list[bytes] | None:
        """DONE for a finished task: the result itself when completed, the error otherwise."""
        if rec.status != states.COMPLETED:
            header = {"task_id": rec.id, "status": rec.status, "error": rec.error,
                      "error_status": rec.error_status, "traceback": rec.traceback}  # fmt: skip
            return p.encode(p.DONE, header)
        mimetype, headers = rec.result_mimetype or "application/octet-stream", rec.result_headers or {}
        if body is None:
            output = self._store().output(rec.id)
            if output is None:  # pragma: no cover - pruned in the same round it completed
                return None
            mimetype, headers, body = output
        header = {"task_id": rec.id, "status": rec.status, "mimetype": mimetype, "headers": headers,
                  "blobs": ["body"]}  # fmt: skip
        return p.encode(p.DONE, header, [body])

    def _publish_dones(self) -> None:
        """Push DONE (after commit, before the round's EVENTs) to the producers that submitted a
        finished task with ``want_result``. Best effort: a producer that is gone still has FETCH."""
        dones, self._dones = self._dones, []
        for rec, body in dones:
            idents = self._done_waiters.pop(rec.id, None)
            if not idents or self._control is None:
                continue
            frames = self._done_frames(rec, body)
            if frames is None:
                continue
            for ident in idents:
                try:
                    send_nowait(self._control, [ident, *frames])
                except zmq.ZMQError as exc:
                    self._count("undelivered")
                    log.debug("could not push DONE for %s: %s", rec.id, exc)
                else:
                    self._count("done_sent")

    def _publish_events(self) -> None:
        """Send the round's DONEs and events (after commit) to producers and the in-process observer.

        DONEs go before the round's events, so a producer never sees a task's terminal event before
        its DONE; but a finishing task's own earlier events of the round (its last progress step, which
        often shares a round with its RESULT) go before its DONE, or a caller woken by the DONE
        (``/inpaint`` returning, then ``diffusion_finish``) would overtake the task's last step."""
        if self._finished:
            self._recent.add(self._finished)
            self._finished = []
        events, self._events = self._events, []
        if self._dones:
            finishing = {rec.id for rec, _ in self._dones}
            early = [e for e in events if e["task_id"] in finishing and e["status"] not in states.TERMINAL]
            if early:
                events = [e for e in events if not (e["task_id"] in finishing and e["status"] not in states.TERMINAL)]
                self._deliver_events(early)
            self._publish_dones()
        self._deliver_events(events)

    def _deliver_events(self, events: list[dict[str, Any]]) -> None:
        """Events, in order, to the watching producers and the in-process observer."""
        if not events:
            return
        if self._watchers and self._control is not None:
            self._send_events(self._control, events)
        if self.events is not None and self.emit_task_events and self.events.has_observers("task_event"):
            for event in events:
                self.events.emit(TaskEvent(**event))  # the task_event hook, off this thread
        if self.on_event is not None:
            for event in events:
                try:
                    self.on_event(TaskEvent(**event))
                except Exception:
                    log.exception("on_event observer failed")

    def _send_events(self, control: zmq.Socket, events: list[dict[str, Any]]) -> None:
        """Send the round's events, in order, to every watcher: one EVENTS to those that opted in
        (encoded once for all of them: the round's events are the same for every watcher), one
        EVENT per event to the others and whenever the round has a single event."""
        plain = list(self._watchers)
        if len(events) > 1 and self._batch_watchers:
            batch = self._batch_watchers
            batched = [ident for ident in plain if ident in batch]
            if batched:
                plain = [ident for ident in plain if ident not in batch]
                for frames in _event_batches(events):
                    batched = [ident for ident in batched if self._send_event(control, ident, frames)]
        for event in events:
            if not plain:
                break
            frames = p.encode(p.EVENT, event)
            plain = [ident for ident in plain if self._send_event(control, ident, frames)]

    def _send_event(self, control: zmq.Socket, ident: bytes, frames: list[bytes]) -> bool:
        """Send one event message to a watcher; one that cannot take it is dropped (it must WATCH
        again), so it is not tried again for the rest of the round."""
        try:
            send_nowait(control, [ident, *frames])
        except zmq.ZMQError:
            self._watchers.pop(ident, None)
            self._batch_watchers.discard(ident)
            return False
        return True

    def _queue_stats(self) -> list[dict[str, Any]]:
        live = self._store().live
        result = []
        for name in self.queues:
            per_state = dict.fromkeys(p.NODE_STATES, 0)
            for node in self.nodes.values():
                if name in node.allowed:
                    per_state[node.state] += 1
            result.append(
                {
                    "name": name,
                    "endpoint": self.endpoints.get("queues", {}).get(name),
                    "queued": live.queued_count(name),
                    "processing": live.processing_count(name),
                    "nodes": per_state,
                }
            )
        return result

    def _refresh_snapshot(self, now: float) -> None:
        """Compute what ``stats()`` reports about tasks, queues and nodes (on request only: the
        per-state task counts scan the journal)."""
        self._snapshot_at = now
        store = self._store()
        node_states = dict.fromkeys(p.NODE_STATES, 0)
        for node in self.nodes.values():
            node_states[node.state] += 1
        snap = {
            "tasks": store.status_counts(),
            "queues": {q["name"]: q for q in self._queue_stats()},
            "nodes": node_states,
            "node_list": [n.public() for n in self.nodes.values()],
            "watchers": len(self._watchers),
            "endpoints": self.endpoints,
        }
        with self._lock:
            self._snapshot = snap
