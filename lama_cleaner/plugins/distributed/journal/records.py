"""The journal's value types: a task's row (:class:`TaskRecord`) and what recovery found
(:class:`RecoveryReport`).

Why a module of their own: the store (:mod:`.task_store`) and its in-memory index
(:mod:`.live_tasks`) both hold records, and the scheduler reads them; keeping the types apart from
the SQLite code lets each of those import them without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ....tasks import DEFAULT_PRIORITY
from . import states


@dataclass
class TaskRecord:
    """One row of ``tasks`` (JSON columns decoded)."""

    seq: int
    id: str
    kind: str
    name: str
    queue: str
    status: str
    attempts: int
    max_attempts: int
    dispatches: int
    recoveries: int
    not_before: float
    node_id: str | None
    progress: float | None
    step: int | None
    total_steps: int | None
    submitter: str | None
    idempotency_key: str | None
    form: dict[str, str]
    error: str | None
    error_status: int | None
    traceback: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result_mimetype: str | None
    result_headers: dict[str, str] | None
    result_sha256: str | None
    duplicates: int
    priority: int = DEFAULT_PRIORITY
    """0..9, higher dispatched first (migration 0004); the live index orders each queue by it."""
    owner: str | None = None
    """The API token's name that submitted it (migration 0005); None for classic requests."""

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.status)


@dataclass
class RecoveryReport:
    """What :meth:`TaskStore.recover` found: queued tasks kept, interrupted ones re-queued."""

    queued: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    charged: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
