"""What the autoscaler reads from the scheduler: the fields of ``SchedulerStats`` it relies on.

The policy is written against these protocols rather than the distributed plugin's classes, so it
is a pure module with no import of the scheduler, and tests can feed it recorded snapshots built
from plain dataclasses with the same field names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

JOINING = "joining"
IDLE = "idle"
BUSY = "busy"
DRAINING = "draining"
OFFLINE = "offline"
SERVING_STATES = frozenset({JOINING, IDLE, BUSY})
"""Node states that count as capacity of their queues (a draining node is on its way out)."""


class QueueStatsView(Protocol):
    """One queue of ``SchedulerStats.queues``."""

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


class NodeInfoView(Protocol):
    """One node of ``SchedulerStats.nodes``."""

    @property
    def node_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def queues(self) -> Sequence[str]: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def current_task(self) -> str | None: ...
    @property
    def progress(self) -> float | None: ...
    @property
    def tasks_done(self) -> int: ...


class SchedulerStatsView(Protocol):
    """``SchedulerStats`` as far as the autoscaler reads it."""

    @property
    def queues(self) -> Mapping[str, QueueStatsView]: ...
    @property
    def nodes(self) -> Sequence[NodeInfoView]: ...


class SchedulerLike(Protocol):
    """The two calls of ``SchedulerHandle`` the autoscaler makes."""

    def stats(self) -> SchedulerStatsView: ...
    def drain_node(self, node_id: str) -> bool: ...
