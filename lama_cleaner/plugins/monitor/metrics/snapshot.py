"""The shape of a scheduler snapshot, as the monitor reads it.

The distributed plugin's ``SchedulerHandle.stats()`` returns frozen dataclasses (``SchedulerStats``,
``QueueStats``, ``NodeInfo``, ``TaskSample``). The monitor only reads their attributes, so it states here what
it reads, as protocols, and works with any object of that shape: the real classes, or the small stand-ins the
unit tests build. Nothing in the monitor imports the distributed plugin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

NODE_STATES = ("joining", "idle", "busy", "draining", "offline")
"""Every state a node can report; each is exported, with 0 where no node is in it, so a series exists before
the first node reaches it (a missing series and a zero read differently in an alert expression)."""

FINISHED_STATUSES = ("completed", "failed", "cancelled")
"""Final task statuses; the scheduler counts each under the same name in ``SchedulerStats.counters``."""


class TaskSampleLike(Protocol):
    """One finished task (``TaskSample``)."""

    @property
    def task_id(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def wait_s(self) -> float | None: ...
    @property
    def run_s(self) -> float | None: ...
    @property
    def finished_at(self) -> float: ...
    @property
    def node_id(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...


class QueueStatsLike(Protocol):
    """One queue (``QueueStats``)."""

    @property
    def name(self) -> str: ...
    @property
    def queued(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def oldest_queued_age_s(self) -> float | None: ...
    @property
    def unschedulable(self) -> int: ...


class NodeInfoLike(Protocol):
    """One node (``NodeInfo``)."""

    @property
    def node_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def queues(self) -> Sequence[str]: ...
    @property
    def models(self) -> Sequence[str]: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def device(self) -> str | None: ...
    @property
    def current_task(self) -> str | None: ...
    @property
    def progress(self) -> float | None: ...
    @property
    def heartbeat_age_s(self) -> float | None: ...
    @property
    def loaded_models(self) -> Sequence[str]: ...
    @property
    def tasks_done(self) -> int: ...


class SchedulerStatsLike(Protocol):
    """A whole snapshot (``SchedulerStats``)."""

    @property
    def time(self) -> float: ...
    @property
    def counters(self) -> Mapping[str, int]: ...
    @property
    def queues(self) -> Mapping[str, QueueStatsLike]: ...
    @property
    def nodes(self) -> Sequence[NodeInfoLike]: ...
    @property
    def recent(self) -> Sequence[TaskSampleLike]: ...


def sample_error(sample: TaskSampleLike) -> str | None:
    """The error of a failed sample, if the snapshot carries one (``TaskSample`` as promised has no such field;
    the dashboard's "recent failures" shows it once the scheduler adds it)."""
    error = getattr(sample, "error", None)
    return str(error) if error else None
