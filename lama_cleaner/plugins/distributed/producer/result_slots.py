"""Where the end of a task submitted with ``want_result`` lands in the web server, and who is woken.

The client's I/O thread opens a :class:`ResultSlot` when it handles the task's ACCEPTED, before it
can read anything else about the task, so nothing that follows is lost to a race with the caller.
It then fills the slot from what it reads: the DONE the scheduler pushes (the result bytes or the
error), or, when no DONE comes to this connection (it reconnected since the SUBMIT), the terminal
status of the task's EVENT. Each of those sets the slot's ``event``, and so does a reconnect or the
client closing, since events of the outage may be lost and the waiter must look again.

One blocking ``/inpaint`` waits on one slot (see ``task_run.run_task``); a batch caller waits on the
``done_event`` of its requests. Nothing here does I/O: the registry is a locked dict of slots, unit
tested on its own.
"""

from __future__ import annotations

import threading

from ..wire import protocol as p


class ResultSlot:
    """The end of one task as this connection learnt it; ``event`` is set whenever that changes.

    ``event`` may be shared with the caller's own waiter (``SchedulerClient.request(..., done_event=)``),
    so one wait covers the DONE and whatever else the caller listens for. ``message`` is the DONE;
    ``status`` the terminal status, from the DONE or from an EVENT (then ``message`` may never come).
    Written by the I/O thread under the registry's lock; the waiter reads them after ``event`` fires.
    """

    __slots__ = ("task_id", "event", "message", "status", "expires")

    def __init__(self, task_id: str, event: threading.Event, expires: float) -> None:
        self.task_id = task_id
        self.event = event
        self.message: p.Message | None = None
        self.status: str | None = None
        self.expires = expires

    @property
    def finished(self) -> bool:
        """True once this connection knows the task ended (a DONE, or a terminal EVENT)."""
        return self.status is not None


class ResultSlots:
    """Thread-safe registry of open slots by task id (written by the I/O thread, read by callers).

    ``ttl_s``: a slot nobody released is dropped this long after it was opened (its caller crashed)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = float(ttl_s)
        self._lock = threading.Lock()
        self._slots: dict[str, ResultSlot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._slots

    def open(self, task_id: str, event: threading.Event, now: float) -> ResultSlot:
        """The slot of ``task_id``, opened with ``event`` unless one is open already (the same task
        accepted twice, through its idempotency key: the first slot stays, with what it holds)."""
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None:
                slot = self._slots[task_id] = ResultSlot(task_id, event, now + self.ttl_s)
            return slot

    def get(self, task_id: str) -> ResultSlot | None:
        with self._lock:
            return self._slots.get(task_id)

    def release(self, task_id: str) -> None:
        """Forget the slot (and the body it may hold). Safe to call twice."""
        with self._lock:
            self._slots.pop(task_id, None)

    def deliver(self, done: p.Message) -> bool:
        """Put a DONE into its task's slot and wake the waiter; False when nobody waits for it here
        (released, or never asked on this connection) or the slot already holds one (a repeat)."""
        with self._lock:
            slot = self._slots.get(done.header["task_id"])
            if slot is None or slot.message is not None:
                return False
            slot.message = done
            if slot.status is None:
                slot.status = str(done.header.get("status"))
        slot.event.set()
        return True

    def mark_terminal(self, task_id: str, status: str) -> None:
        """A terminal EVENT for ``task_id``: wake its waiter, which then uses the DONE or FETCHes."""
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None or slot.status is not None:
                return
            slot.status = status
        slot.event.set()

    def wake_all(self) -> None:
        """Wake every waiter to look again (after a reconnect, or when the client closes)."""
        with self._lock:
            events = [slot.event for slot in self._slots.values()]
        for event in events:
            event.set()

    def expire(self, now: float) -> int:
        """Drop the slots opened more than ``ttl_s`` ago; returns how many."""
        with self._lock:
            stale = [task_id for task_id, slot in self._slots.items() if slot.expires < now]
            for task_id in stale:
                del self._slots[task_id]
        return len(stale)
