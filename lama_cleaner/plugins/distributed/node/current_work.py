"""What a node is working on now, and the CANCELs that overtook their TASK.

Plain bookkeeping, no sockets and no processes: :class:`CurrentTask` is a task the node holds (it
holds at most its ``pipeline_depth`` of them), :class:`RecentCancels` remembers CANCELs that arrived
before their TASK (CANCEL travels on the control socket, TASK on a queue socket, so the order between
them is not guaranteed).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class CurrentTask:
    """A task the node holds (one of at most ``pipeline_depth``)."""

    task_id: str
    attempt: int
    kind: str
    name: str
    queue: str
    started: float
    cancel_deadline: float | None = None
    payload: tuple[dict[str, Any], dict[str, bytes]] | None = None
    """(TASK header, files) until the task is handed to an inference child."""
    handed: bool = False
    """True once the inference child has the task (it may be running)."""
    cancelled: bool = False
    """The outcome is CANCELLED; it is reported as soon as an inference child is ready again."""
    slot: int | None = None
    """Its slot in the node's shared memory, if the scheduler gave it one (protocol minor 4)."""
    session: int = 0
    """The WELCOME it arrived under: its result goes by reference only to that same registration."""


@dataclass
class SentOutcome:
    """An outcome already sent, kept to be sent again after the next WELCOME (the scheduler may not
    have got it). A RESULT whose body is only in shared memory keeps its ``slot`` and ``length`` until
    it is made whole (:meth:`.agent.Node._whole`): before the slot takes another task, or when re-sent."""

    frames: list[bytes]
    header: dict[str, Any] | None = None
    """The RESULT's header without ``shared`` (None: ``frames`` are whole)."""
    slot: int | None = None
    length: int = 0


class RecentCancels:
    """CANCELs for (task_id, attempt) pairs the node did not hold when they arrived.

    Bounded by count and age: the scheduler sends a TASK before any CANCEL for it, so an overtaken
    TASK is at most a network hop behind; entries only need to outlive that. An attempt number is
    never dispatched twice, so a remembered pair can never cancel a later, legitimate dispatch."""

    def __init__(self, limit: int = 64, ttl_s: float = 300.0) -> None:
        self.limit = limit
        self.ttl_s = ttl_s
        self._seen: OrderedDict[tuple[str, int], float] = OrderedDict()

    def add(self, task_id: str, attempt: int, now: float) -> None:
        self._seen[(task_id, attempt)] = now
        self._seen.move_to_end((task_id, attempt))
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def take(self, task_id: str, attempt: int, now: float) -> bool:
        """True (and forgotten) if this attempt was cancelled within ``ttl_s``."""
        if not self._seen:  # the usual case: one dict check per TASK
            return False
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest <= self.ttl_s:
                break
            self._seen.popitem(last=False)
        return self._seen.pop((task_id, attempt), None) is not None

    def __len__(self) -> int:
        return len(self._seen)
