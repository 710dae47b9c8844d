"""Task events, DONE pushes and node events: collected during a round, published after its commit.

:class:`EventPublisher` is the one place that knows who listens: producers that sent WATCH (plain
EVENT or batched EVENTS), producers waiting for a task's DONE (``want_result``), the embedding
process's ``on_event`` callback, and the plugin hooks behind an ``EventSink`` (``task_event``,
``node_event``; run off the loop's thread). Handlers only call :meth:`EventPublisher.record`; the
loop calls :meth:`EventPublisher.publish` once the round is durable, or :meth:`EventPublisher.rollback`
when a message's savepoint is undone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from ....tasks import TaskEvent
from ..journal import states
from ..journal.records import TaskRecord
from ..wire import protocol as p
from ..wire.send import send_nowait
from .outbox import Out, Outbox
from .scheduler_state import SchedulerState
from .snapshots import NodeWatch, RecentTasks

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

_STATES_WITH_ERROR = frozenset({states.FAILED, states.CANCELLED, states.QUEUED})

RoundMark = tuple[int, int, int]
"""Lengths of the round's events, DONEs and finished records at some point (see ``rollback``)."""


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


def done_frames(rec: TaskRecord, body: bytes | None, state: SchedulerState) -> list[bytes] | None:
    """DONE for a finished task: the result itself when completed, the error otherwise."""
    if rec.status != states.COMPLETED:
        header = {"task_id": rec.id, "status": rec.status, "error": rec.error,
                  "error_status": rec.error_status, "traceback": rec.traceback}  # fmt: skip
        return p.encode(p.DONE, header)
    mimetype, headers = rec.result_mimetype or "application/octet-stream", rec.result_headers or {}
    if body is None:
        output = state.journal().output(rec.id)
        if output is None:  # pragma: no cover - pruned in the same round it completed
            return None
        mimetype, headers, body = output
    header = {"task_id": rec.id, "status": rec.status, "mimetype": mimetype, "headers": headers,
              "blobs": ["body"]}  # fmt: skip
    return p.encode(p.DONE, header, [body])


class EventPublisher:
    """The round's task events and DONEs, the watchers and DONE waiters they go to, and the
    samples of finished tasks (``recent``) and node changes (``node_event``) they feed."""

    def __init__(
        self,
        state: SchedulerState,
        *,
        on_event: Callable[[TaskEvent], None] | None,
        events: Any,
        emit_task_events: bool,
    ) -> None:
        self.state = state
        self.on_event = on_event
        self.events = events
        """An ``EventSink`` (``emit`` for ``task_event``, ``notify`` for the other hooks), or None."""
        self.emit_task_events = emit_task_events
        self.control: zmq.Socket | None = None
        """The control ROUTER events and DONEs are pushed on (set while the sockets are open)."""
        self.watchers: dict[bytes, tuple[str, float]] = {}
        """Producers that sent WATCH: identity -> (producer id, when last heard from)."""
        self.batch_watchers: set[bytes] = set()
        """Watchers whose last WATCH said ``batch_events: true`` (a subset of ``watchers``)."""
        self.done_waiters: dict[str, list[bytes]] = {}
        """Task id -> producers that want its DONE."""
        self.recent = RecentTasks()
        self._events: list[dict[str, Any]] = []
        self._dones: list[tuple[TaskRecord, bytes | None]] = []  # finished this round, DONE after commit
        self._finished: list[TaskRecord] = []  # finished this round, sampled after commit
        self._node_watch = NodeWatch()

    # ------------------------------------------------------------------ collecting (handlers)
    def record(
        self, rec: TaskRecord, *, progress: float | None = None, step: int | None = None, body: bytes | None = None
    ) -> None:
        """Queue an event (the fields of :class:`TaskEvent`, in its order; sent as an EVENT or in the
        round's EVENTS) for after the commit, and a DONE for producers that asked for the result of a
        task that just finished (``body``: the result, when the caller has it at hand)."""
        if rec.status in states.TERMINAL:
            self._finished.append(rec)
            if rec.id in self.done_waiters:
                self._dones.append((rec, body))
        if not self.watchers and self.on_event is None and not (self.events is not None and self.emit_task_events):
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

    def want_result(self, ident: bytes, rec: TaskRecord, outbox: Outbox) -> None:
        """Remember that ``ident`` wants the DONE of ``rec``; one already finished gets it now
        (after the ACCEPTED, which the outbox sends first)."""
        if rec.terminal:
            frames = done_frames(rec, None, self.state)
            if frames is not None:
                outbox.append(Out(ident, frames))
                self.state.counters.count("done_sent")
            return
        waiters = self.done_waiters.setdefault(rec.id, [])
        if ident not in waiters:
            waiters.append(ident)

    def mark(self) -> RoundMark:
        """Where the round stands, to undo one message's additions with :meth:`rollback`."""
        return len(self._events), len(self._dones), len(self._finished)

    def rollback(self, mark: RoundMark) -> None:
        events, dones, finished = mark
        del self._events[events:]
        del self._dones[dones:]
        del self._finished[finished:]

    def discard_round(self) -> None:
        """The round's commit failed: nothing of it may be announced."""
        self._events.clear()
        self._dones.clear()
        self._finished.clear()

    # ------------------------------------------------------------------ watchers
    def watch(self, ident: bytes, producer_id: str, batch: bool, now: float) -> None:
        """Subscribe ``ident``; every WATCH restates whether it wants batched EVENTS."""
        self.watchers[ident] = (producer_id, now)
        if batch:
            self.batch_watchers.add(ident)
        else:
            self.batch_watchers.discard(ident)

    def heard_from(self, ident: bytes, now: float) -> None:
        """Any request from a watcher keeps its subscription alive."""
        watcher = self.watchers.get(ident)
        if watcher is not None:
            self.watchers[ident] = (watcher[0], now)

    def expire_watchers(self, now: float, deadline: float) -> None:
        for ident, (producer_id, seen) in list(self.watchers.items()):
            if now - seen > deadline:
                del self.watchers[ident]
                self.batch_watchers.discard(ident)
                log.info("producer %s stopped pinging; no more events to it", producer_id)

    def forget_stale_waiters(self) -> None:
        """Drop DONE waiters of tasks that do not exist (a SUBMIT whose round was rolled back, or a
        pruned task) or finished without a DONE pending; normally a waiter goes when its DONE does."""
        store = self.state.journal()
        live = store.live.records
        pending = {rec.id for rec, _ in self._dones}
        for task_id in [t for t in self.done_waiters if t not in live and t not in pending]:
            rec = store.get(task_id)
            if rec is None or rec.terminal:
                del self.done_waiters[task_id]

    # ------------------------------------------------------------------ publishing (after commit)
    def publish(self) -> None:
        """Send the round's DONEs and events (after commit) to producers and the in-process observer.

        DONEs go before the round's events, so a producer never sees a task's terminal event before
        its DONE; but a finishing task's own earlier events of the round (its last progress step, which
        often shares a round with its RESULT) go before its DONE, or a caller woken by the DONE
        (``/inpaint`` returning, then ``diffusion_finish``) would overtake the task's last step."""
        if self._finished:
            self.recent.add(self._finished)
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

    def publish_node_events(self, now: float) -> None:
        """Fire ``node_event`` for what changed in the node registry this round (off this thread)."""
        events = self.events
        if events is None or not hasattr(events, "notify") or not events.has_observers("node_event"):
            return
        for event in self._node_watch.changes(self.state.nodes, now, self.state.journal().live):
            events.notify("node_event", event=event)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Fire one of the other observing hooks (``task_unschedulable``) through the sink, if any."""
        notify = getattr(self.events, "notify", None)
        if notify is not None:
            notify(hook_name, **kwargs)

    def _publish_dones(self) -> None:
        """Push DONE (after commit, before the round's EVENTs) to the producers that submitted a
        finished task with ``want_result``. Best effort: a producer that is gone still has FETCH."""
        dones, self._dones = self._dones, []
        counters = self.state.counters
        for rec, body in dones:
            idents = self.done_waiters.pop(rec.id, None)
            if not idents or self.control is None:
                continue
            frames = done_frames(rec, body, self.state)
            if frames is None:
                continue
            for ident in idents:
                try:
                    send_nowait(self.control, [ident, *frames])
                except zmq.ZMQError as exc:
                    counters.count("undelivered")
                    log.debug("could not push DONE for %s: %s", rec.id, exc)
                else:
                    counters.count("done_sent")

    def _deliver_events(self, events: list[dict[str, Any]]) -> None:
        """Events, in order, to the watching producers and the in-process observer."""
        if not events:
            return
        if self.watchers and self.control is not None:
            self._send_events(self.control, events)
        if self.events is not None and self.emit_task_events and self.events.has_observers("task_event"):
            self.events.emit_fields(events)  # the task_event hook, off this thread (events built there too)
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
        plain = list(self.watchers)
        if len(events) > 1 and self.batch_watchers:
            batch = self.batch_watchers
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
            self.watchers.pop(ident, None)
            self.batch_watchers.discard(ident)
            return False
        return True
