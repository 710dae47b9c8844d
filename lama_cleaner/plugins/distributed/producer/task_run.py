"""One blocking request's path through the client: SUBMIT, wait for the task's end, its result.

``run_task`` is what a classic ``/inpaint`` or ``/run_plugin`` needs from the scheduler, start to
finish, on the caller's thread. It calls into the client and nothing calls back into it: the client's
I/O thread only fills and wakes the task's :class:`~.result_slots.ResultSlot`. It returns the
messages that decide the answer (a :class:`TaskOutcome`); what they mean for the HTTP reply is
``translate.run_output``'s business.

1. SUBMIT with ``want_result``: the I/O thread opens the task's slot when it handles the ACCEPTED,
   before this thread sees the task id, so nothing about the task can arrive unseen.
2. Wait on the slot. It is woken by the DONE (the outcome with the result bytes: done, with no
   further request), by the task's terminal EVENT (this connection gets no DONE, e.g. it reconnected
   since the SUBMIT), by a reconnect (events of the outage may be lost) and by the client closing.
   A wake-up that brings no end, or ``RECHECK_S`` without any, is checked with GET, so an event
   missed across a scheduler restart cannot hang the request; a scheduler that does not answer that
   GET is waited for until the deadline. The hot path costs one Event wait.
3. Ended without a DONE here: FETCH. Not ended by the deadline: CANCEL (best effort), no outcome.

The slot is released in every case. A refused SUBMIT is an outcome too (its REJECTED); the client's
own failures (``SchedulerUnavailable``, ``SchedulerError``, ``ProtocolError``) are raised, and a
client that closes while this waits raises ``SchedulerUnavailable`` at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ....errors import LamaCleanerError, Overloaded
from ....tasks import TERMINAL_STATES
from ..wire import protocol as p
from .client import SchedulerClient, SchedulerUnavailable
from .result_slots import ResultSlot

RECHECK_S = 2.0
"""While no DONE or terminal EVENT comes, ask GET this often (events can be missed across a restart)."""


@dataclass(frozen=True)
class TaskOutcome:
    """How one submitted task ended for the caller that waited for it (messages, no meaning yet).

    ``reply``: the SUBMIT's ACCEPTED or REJECTED. ``final``: the task's DONE, the FETCH reply
    (OUTPUT or REJECTED), or a GET's REJECTED (the task is gone); None when the SUBMIT was refused
    or the task did not end before the deadline."""

    reply: p.Message
    final: p.Message | None = None

    @property
    def task_id(self) -> str | None:
        task = self.reply.header.get("task")
        return task.get("id") if isinstance(task, dict) else None


def run_task(
    client: SchedulerClient,
    header: dict[str, Any],
    blobs: list[bytes],
    *,
    timeout: float,
    recheck_s: float = RECHECK_S,
) -> TaskOutcome:
    """SUBMIT ``header`` (a SUBMIT header without ``want_result``) with ``blobs`` and wait up to
    ``timeout`` seconds, from its ACCEPTED, for the task's end; see the module docstring."""
    done = threading.Event()
    reply = client.request(p.SUBMIT, {**header, "want_result": True}, blobs, done_event=done)
    if reply.command != p.ACCEPTED:
        return TaskOutcome(reply)
    task_id = str(reply.header["task"]["id"])
    try:
        # The slot was opened with ``done`` unless this task already had one (the same idempotency
        # key, from another caller): then that slot's event is the one that is woken.
        slot = client.result_slot(task_id)
        wake = slot.event if slot is not None else done
        return TaskOutcome(reply, _wait_for_end(client, task_id, slot, wake, timeout, recheck_s))
    finally:
        client.release_result(task_id)


def _wait_for_end(
    client: SchedulerClient,
    task_id: str,
    slot: ResultSlot | None,
    wake: threading.Event,
    timeout: float,
    recheck_s: float,
) -> p.Message | None:
    """The task's DONE, its FETCH reply, or a GET's REJECTED; None when it did not end in time."""
    deadline = time.monotonic() + timeout
    while slot is None or not slot.finished:
        if client.closed:
            raise SchedulerUnavailable("Scheduler client stopped", client.retry_after)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _cancel(client, task_id)
            return None
        woke = wake.wait(min(recheck_s, remaining))
        wake.clear()  # cleared before the checks above run again: no lost wake-up
        if woke and (client.closed or (slot is not None and slot.finished)):
            continue
        try:
            info = client.request(p.GET, {"task_id": task_id})
        except Overloaded:
            continue  # scheduler unreachable for now: keep waiting until the deadline
        if info.command == p.REJECTED:
            if info.header.get("status") == Overloaded.status:
                continue  # busy for now, like unreachable
            return info  # the task is gone (404, 410): nothing to wait for
        if info.header["task"]["status"] in TERMINAL_STATES:
            break
    if slot is not None and slot.message is not None:
        return slot.message
    return client.request(p.FETCH, {"task_id": task_id})  # no DONE on this connection


def _cancel(client: SchedulerClient, task_id: str) -> None:
    """Best effort: a task nobody waits for any more should not run (its answer, if any, is dropped)."""
    try:
        client.request(p.CANCEL, {"task_id": task_id})
    except LamaCleanerError:
        pass
