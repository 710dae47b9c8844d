"""The scheduler's producer side: SUBMIT, GET, FETCH, CANCEL, LIST, QUEUES, NODES, DRAIN, STATS, CALL,
WATCH, PING.

SUBMIT is answered ACCEPTED only after the round's commit (the loop sends the outbox then), a
reused idempotency key returns the existing task, and a full journal is a 503 with ``retry_after``.
A SUBMIT with ``want_result: true`` also gets a DONE (with the result) when the task finishes, which
saves the producer the FETCH round trip. SUBMIT's optional ``task.priority`` (0..9, default 5)
orders dispatch within the task's queue. A WATCH with ``batch_events: true`` gets each round's
events as one EVENTS message instead of one EVENT each. STATS answers the scheduler handle's
snapshot (``handle.SchedulerStats`` as JSON); CALL is answered by a plugin, off this thread
(:mod:`.plugin_calls`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ....errors import ClientError
from ....tasks import DEFAULT_PRIORITY, TASK_STATES, check_priority
from ..journal import states
from ..journal.records import TaskRecord
from ..journal.task_store import TaskStore
from ..wire import protocol as p
from .event_publishing import EventPublisher
from .handle import stats_to_dict
from .node_registry import NodeEntry
from .outbox import Out, Outbox, reject, reply, send_ctrl, task_info
from .plugin_calls import PluginCalls
from .retry_policy import policy_for
from .routing import RoutingError, route_task
from .scheduler_state import SchedulerState
from .stats_reporting import StatsReporter

TASK_KINDS = ("inpaint", "plugin")

ProducerHandler = Callable[[bytes, p.Message, float, Outbox], None]
"""``(identity, message, now, outbox)``: one request from a producer."""


class ProducerHandlers:
    """Handlers for requests from producers (the web servers) on the control socket.

    Reads and changes the journal through the shared :class:`~.scheduler_state.SchedulerState`;
    task changes and subscriptions go to the :class:`~.event_publishing.EventPublisher`; STATS and
    QUEUES are answered from the :class:`~.stats_reporting.StatsReporter`; CALL is handed to
    :class:`~.plugin_calls.PluginCalls`; DRAIN uses the node side's ``drain`` (its rules: the drain
    is remembered across re-registrations and a lost DRAIN is re-sent)."""

    def __init__(
        self,
        state: SchedulerState,
        events: EventPublisher,
        stats: StatsReporter,
        plugin_calls: PluginCalls,
        drain: Callable[[NodeEntry, Outbox], None],
    ) -> None:
        self.state = state
        self.events = events
        self.stats = stats
        self.plugin_calls = plugin_calls
        self.drain = drain
        self.nodes = state.nodes
        """The node registry (``state.nodes``), read for CANCEL, NODES and DRAIN."""

    def handlers(self) -> dict[str, ProducerHandler]:
        """The control-socket requests this side answers."""
        return {
            p.SUBMIT: self._on_submit,
            p.GET: self._on_get,
            p.FETCH: self._on_fetch,
            p.CANCEL: self._on_cancel,
            p.LIST: self._on_list,
            p.QUEUES: self._on_queues,
            p.NODES: self._on_nodes,
            p.DRAIN: self._on_drain,
            p.STATS: self._on_stats,
            p.CALL: self._on_call,
            p.WATCH: self._on_watch,
            p.PING: self._on_ping,
        }

    def _store(self) -> TaskStore:
        return self.state.journal()

    def _count(self, name: str, n: int = 1) -> None:
        self.state.counters.count(name, n)

    def _info(self, rec: TaskRecord) -> dict[str, Any]:
        return task_info(rec, self._store().live)

    def _on_submit(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        req_id = msg.header["req_id"]
        task = msg.header["task"]
        try:
            kind, name, form, submitter, key, priority = parse_submit(task)
            owner = parse_owner(task)
        except ClientError as exc:
            self._count("rejected_bad_request")
            reject(outbox, ident, req_id, 400, exc.code, exc.message)
            return
        store = self._store()
        if key:
            existing = store.find_by_idempotency_key(key)
            if existing is not None:
                reply(outbox, ident, p.ACCEPTED, req_id, {"task": self._info(existing), "existing": True})
                if msg.header.get("want_result") is True:
                    self.events.want_result(ident, existing, outbox)
                return
        try:
            queue = route_task(
                kind,
                name,
                resource_class_of=self.state.resource_class_of,
                rules=self.state.dcfg.routes,
                queues=self.state.queues,
            )
        except RoutingError as exc:
            self._count("rejected_bad_request")
            reject(outbox, ident, req_id, exc.status, exc.code, exc.message)
            return
        if store.count_queued() >= self.state.dcfg.max_queued:
            self._overloaded(outbox, ident, req_id, f"the scheduler holds {self.state.dcfg.max_queued} queued tasks")
            return
        if store.count_queued(queue) >= self.state.dcfg.max_queued_per_queue:
            limit = self.state.dcfg.max_queued_per_queue
            self._overloaded(outbox, ident, req_id, f"queue {queue!r} holds {limit} queued tasks")
            return
        rec, _ = store.create_task(
            kind=kind,
            name=name,
            queue=queue,
            max_attempts=policy_for(kind, self.state.dcfg.retry).max_attempts,
            form=form,
            files=msg.blob_map(),
            submitter=submitter,
            idempotency_key=key,
            priority=priority,
            owner=owner,
            now=now,
        )
        self._count("submitted")
        reply(outbox, ident, p.ACCEPTED, req_id, {"task": self._info(rec)})
        self.events.record(rec)
        if msg.header.get("want_result") is True:
            self.events.want_result(ident, rec, outbox)

    def _overloaded(self, outbox: Outbox, ident: bytes, req_id: Any, why: str) -> None:
        self._count("rejected_overloaded")
        retry_after = int(self.state.dcfg.retry_after_s)
        reject(outbox, ident, req_id, 503, "overloaded", f"Server is busy: {why}; retry later", retry_after)

    def _lookup(self, outbox: Outbox, ident: bytes, req_id: Any, task_id: str) -> TaskRecord | None:
        rec = self._store().get(task_id)
        if rec is None:
            if self._store().is_expired(task_id):
                reject(outbox, ident, req_id, 410, "expired", f"Task {task_id} has expired")
            else:
                reject(outbox, ident, req_id, 404, "not_found", f"Task {task_id} not found")
        return rec

    def _on_get(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        rec = self._lookup(outbox, ident, msg.header["req_id"], msg.header["task_id"])
        if rec is not None:
            info = self._info(rec)
            # One task's detail only (lists and events stay small), and only where the operator opted
            # in: a traceback shows server paths and library versions to an unauthenticated caller.
            if rec.status == states.FAILED and rec.traceback and self.state.dcfg.expose_tracebacks:
                info["traceback"] = rec.traceback
            reply(outbox, ident, p.INFO, msg.header["req_id"], {"task": info})

    def _on_fetch(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        req_id = msg.header["req_id"]
        rec = self._lookup(outbox, ident, req_id, msg.header["task_id"])
        if rec is None:
            return
        if rec.status in (states.QUEUED, states.PROCESSING):
            reject(outbox, ident, req_id, 409, "not_finished", f"Task {rec.id} is {rec.status}")
        elif rec.status == states.CANCELLED:
            reject(outbox, ident, req_id, 409, "cancelled", "Task was cancelled")
        elif rec.status == states.FAILED:
            header = {
                "status": 500,
                "code": "task_failed",
                "message": rec.error or "task failed",
                "retry_after": None,
                "error_status": rec.error_status,
                "traceback": rec.traceback,
            }
            reply(outbox, ident, p.REJECTED, req_id, header)
        else:
            output = self._store().output(rec.id)
            if output is None:
                reject(outbox, ident, req_id, 410, "expired", f"The result of task {rec.id} has expired")
                return
            mimetype, headers, body = output
            frames = p.encode(
                p.OUTPUT, {"req_id": req_id, "mimetype": mimetype, "headers": headers, "blobs": ["body"]}, [body]
            )
            outbox.append(Out(ident, frames))

    def _on_cancel(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        req_id = msg.header["req_id"]
        rec = self._lookup(outbox, ident, req_id, msg.header["task_id"])
        if rec is None:
            return
        if not rec.terminal:
            holder = self.nodes.get(rec.node_id) if rec.status == states.PROCESSING and rec.node_id else None
            attempt = rec.dispatches
            rec = self._store().cancel(rec.id, now)
            self._count("cancelled")
            if holder is not None and not holder.offline and rec.id in holder.held:
                # Cancelled for the client at once; the node stays busy until it confirms
                # (CANCELLED, then READY), and a late RESULT is discarded as a duplicate.
                send_ctrl(outbox, holder.ctrl_ident, p.CANCEL, {"task_id": rec.id, "attempt": attempt})
            self.events.record(rec)
        reply(outbox, ident, p.INFO, req_id, {"task": self._info(rec)})

    def _on_list(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        h = msg.header
        req_id = h["req_id"]
        status = h.get("status") or None
        limit, offset, owner = h.get("limit", 50), h.get("offset", 0), h.get("owner")
        if owner is not None and not isinstance(owner, str):
            reject(outbox, ident, req_id, 400, "bad_request", "owner must be a string")
            return
        if status is not None and status not in TASK_STATES:
            reject(outbox, ident, req_id, 400, "bad_request", f"Unknown status {status!r}")
            return
        if not _is_int(limit) or not _is_int(offset) or limit < 0 or offset < 0:
            reject(outbox, ident, req_id, 400, "bad_request", "limit and offset must be integers >= 0")
            return
        records, total = self._store().list(status, min(int(limit), 1000), int(offset), owner)
        reply(outbox, ident, p.TASKS, req_id, {"tasks": [self._info(r) for r in records], "total": total})

    def _on_queues(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        reply(outbox, ident, p.STATS, msg.header["req_id"], {"queues": self.stats.queue_rows()})

    def _on_nodes(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        nodes = [n.public() for n in sorted(self.nodes.values(), key=lambda n: n.registered_at)]
        reply(outbox, ident, p.STATS, msg.header["req_id"], {"nodes": nodes})

    def _on_drain(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        """Drain a node on an operator's or autoscaler's request: it finishes its current task and gets
        no more work. Answered with the node as NODES lists it; draining twice is not an error."""
        req_id, node_id = msg.header["req_id"], msg.header["node_id"]
        node = self.nodes.get(node_id)
        if node is None:
            reject(outbox, ident, req_id, 404, "not_found", f"Node {node_id} not found")
            return
        if node.offline:
            reject(outbox, ident, req_id, 409, "node_offline", f"Node {node_id} is offline")
            return
        self.drain(node, outbox)
        reply(outbox, ident, p.STATS, req_id, {"node": node.public()})

    def _on_stats(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        """The handle's snapshot, as ``SchedulerHandle.stats()`` gives it in the scheduler's process."""
        stats = stats_to_dict(self.stats.build(now))
        header = {"stats": stats, "protocol_minor": p.PROTOCOL_MINOR}
        reply(outbox, ident, p.STATS, msg.header["req_id"], header)

    def _on_call(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        """Hand a plugin call to the worker threads; they send ANSWER or REJECTED through the loop."""
        h = msg.header
        self.plugin_calls.submit(ident, h["req_id"], h["name"], h["payload"])

    def _on_watch(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        """Subscribe ``ident`` to task events; ``batch_events: true`` opts in to EVENTS. Every WATCH
        restates the choice, so a producer that reconnects or downgrades is served what it said last."""
        self.events.watch(ident, str(msg.header["producer_id"]), msg.header.get("batch_events") is True, now)
        self._on_ping(ident, msg, now, outbox)

    def _on_ping(self, ident: bytes, msg: p.Message, now: float, outbox: Outbox) -> None:
        """PONG (echoing ``req_id`` when the PING or WATCH carried one)."""
        req_id = msg.header.get("req_id")
        send_ctrl(outbox, ident, p.PONG, {"req_id": req_id} if req_id is not None else {})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def peek_req_id(body: list[bytes]) -> Any:
    """The req_id of a message that failed validation, if its header is readable JSON.

    Read with orjson, as ``protocol.decode`` reads headers: an integer beyond 64 bits then comes back
    as a float (no req_id), where the standard library's parser returned one that no reply could
    carry (encoding the REJECTED failed, and the error undid the whole round's replies)."""
    if len(body) < 3:
        return None
    try:
        header = orjson.loads(bytes(body[2]))
    except ValueError:
        return None
    req_id = header.get("req_id") if isinstance(header, dict) else None
    if isinstance(req_id, str) or (isinstance(req_id, int) and not isinstance(req_id, bool)):
        return req_id
    return None


def parse_owner(task: dict[str, Any]) -> str | None:
    """SUBMIT's optional ``owner`` (the API token's name, protocol 1.x additive): a short string or null."""
    owner = task.get("owner")
    if owner is not None and (not isinstance(owner, str) or not 0 < len(owner) <= 200):
        raise ClientError("owner must be a string of 1-200 characters")
    return owner


def parse_submit(task: dict[str, Any]) -> tuple[str, str, dict[str, str], str | None, str | None, int]:
    """Validate SUBMIT's ``task`` object: (kind, name, form, submitter, idempotency_key, priority).
    An absent or null ``priority`` is the default (5); anything but an integer 0..9 is refused."""
    kind = task.get("kind")
    name = task.get("name")
    if kind not in TASK_KINDS:
        raise ClientError(f"task kind must be one of {', '.join(TASK_KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise ClientError("task name must be a non-empty string")
    form = task.get("form") or {}
    if not isinstance(form, dict):
        raise ClientError("task form must be an object of strings")
    clean: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, (dict, list)):
            raise ClientError(f"form field {key!r} must be a string")
        clean[str(key)] = "" if value is None else str(value)
    submitter = task.get("submitter")
    key = task.get("idempotency_key")
    if submitter is not None and not isinstance(submitter, str):
        raise ClientError("submitter must be a string")
    if key is not None and (not isinstance(key, str) or len(key) > 256):
        raise ClientError("idempotency_key must be a string of at most 256 characters")
    raw_priority = task.get("priority")
    try:
        priority = DEFAULT_PRIORITY if raw_priority is None else check_priority(raw_priority)
    except ValueError as exc:
        raise ClientError(str(exc)) from None
    return kind, name, clean, submitter, key or None, priority
