"""Plain data that describes one unit of work and what came out of it.

A ``TaskRequest`` is exactly what the HTTP edge received (raw form strings and raw file bytes), so
that the same ``pipeline.execute_task`` runs it in-process (classic mode) or on a node (distributed
mode) and produces byte-identical replies. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .errors import ClientError

TaskKind = Literal["inpaint", "plugin"]

TASK_STATES = ("queued", "processing", "completed", "failed", "cancelled")
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})

MIN_PRIORITY, MAX_PRIORITY = 0, 9
DEFAULT_PRIORITY = 5
"""Task priority: higher runs first, FIFO within one priority. Strict: a queued lower-priority task
waits while higher-priority work is queued for the same queue, so low values are for background
batches (``lama-cleaner batch`` uses 2) and interactive requests keep the default."""


def check_priority(value: object) -> int:
    """``value`` as a priority, or ``ValueError`` with a message a client can act on. Only real
    integers count (not ``True``, not ``7.0``, not ``"7"``): the edges convert their own text first."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value!r}")
    return value


@dataclass
class TaskRequest:
    """One ``/inpaint`` or ``/run_plugin`` call (or its ``/api/v1/tasks`` equivalent).

    ``name`` is the model name for ``inpaint`` and the image-plugin name for ``plugin``.
    ``submitter`` is the Socket.IO sid of the client that asked, when known (for targeted events), or
    ``"*"`` for a classic request that named no socket at all (its step events are broadcast, as
    upstream did; see ``server/notifications.py``).
    ``priority`` orders dispatch (see :data:`DEFAULT_PRIORITY`); the classic routes keep the default.
    """

    kind: TaskKind
    name: str
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    submitter: str | None = None
    idempotency_key: str | None = None
    task_id: str | None = None
    priority: int = DEFAULT_PRIORITY
    owner: str | None = None
    """The API token's name that submitted it (``server/auth.py``); None without tokens and on the
    classic routes. A ``tasks``-scoped token sees only the tasks it owns."""


def require_file(request: TaskRequest, key: str) -> bytes:
    """A required upload; a missing one is a 400 (upstream: Werkzeug's Bad Request page). An empty one
    fails later, when its header is read, with the undecodable-image 400."""
    data = request.files.get(key)
    if data is None:
        raise ClientError(f"Missing form field: {key}")
    return data


def require_form(request: TaskRequest, key: str) -> str:
    """A required form field; a missing one is the same 400 as a missing upload."""
    value = request.form.get(key)
    if value is None:
        raise ClientError(f"Missing form field: {key}")
    return value


@dataclass
class TaskOutput:
    """An encoded reply: body bytes, its MIME type and extra headers (``X-Seed``, ...)."""

    body: bytes
    mimetype: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Progress:
    """Progress of a running task.

    ``step`` is 0-based and set only by models that step (diffusion); ``percent`` is always set.
    """

    percent: float
    step: int | None = None
    total_steps: int | None = None


@dataclass
class TaskEvent:
    """A lifecycle change, observed by the ``task_event`` hook and sent to Socket.IO clients."""

    task_id: str
    status: str
    kind: TaskKind = "inpaint"
    name: str = ""
    queue: str | None = None
    node: str | None = None
    progress: float | None = None
    step: int | None = None
    error: str | None = None
    submitter: str | None = None
    attempts: int = 0
    at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        """The ``task_status`` Socket.IO payload."""
        return {
            "id": self.task_id,
            "status": self.status,
            "progress": self.progress,
            "queue": self.queue,
            "node": self.node,
            "error": self.error,
        }


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def never_cancelled() -> bool:
    return False


def ignore_progress(_: Progress) -> None:
    return None


@dataclass
class TaskInfo:
    """What the task API reports about one task (``GET /api/v1/tasks/{id}``)."""

    id: str
    kind: TaskKind
    name: str
    status: str
    queue: str | None = None
    node: str | None = None
    progress: float | None = None
    attempts: int = 0
    max_attempts: int = 1
    priority: int = DEFAULT_PRIORITY
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    position: int | None = None
    error: str | None = None
    traceback: str | None = None
    """The failed attempt's traceback, for operators (``GET /api/v1/tasks/{id}`` of a failed task only)."""
    owner: str | None = None
    """Who submitted it (:attr:`TaskRequest.owner`); checked by the API, never shown."""


class TaskService(Protocol):
    """Asynchronous task access, provided by executors that keep tasks (the distributed one).

    The ``/api/v1`` blueprint is written against this protocol only. Errors are the exceptions
    of ``lama_cleaner.errors``: ``NotFound`` (unknown id), ``Overloaded`` (full), ``ClientError``
    (bad input, unknown model/plugin), ``TaskFailed``/``TaskCancelled`` (result of such a task),
    ``LamaCleanerError(status=409, code="not_finished")`` and ``(status=410, code="expired")``.
    """

    def current_model(self) -> str:
        """The model an inpaint task without a ``model`` field runs on (what ``GET /model`` says)."""
        ...

    def submit(self, request: TaskRequest) -> TaskInfo:
        """Accept a task durably and return at once (status ``queued``). Honour
        ``request.idempotency_key``: the same key returns the already existing task."""
        ...

    def get(self, task_id: str) -> TaskInfo: ...

    def result(self, task_id: str) -> TaskOutput: ...

    def cancel(self, task_id: str) -> TaskInfo:
        """Cancel a queued (never dispatched afterwards) or running (node told to stop) task."""
        ...

    def list(
        self, status: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None
    ) -> tuple[list[TaskInfo], int]:
        """A page of tasks, newest first, and the total count matching ``status`` (and ``owner``,
        when given: the API passes it for a ``tasks``-scoped token)."""
        ...

    def queues(self) -> list[dict[str, Any]]:
        """Per queue: name, endpoint, queued, processing, nodes (idle/busy counts)."""
        ...

    def nodes(self) -> list[dict[str, Any]]:
        """Per node: id, name, state (idle/busy/draining/offline), capabilities, queues,
        current_task, loaded_model, last_heartbeat."""
        ...

    def health(self) -> dict[str, Any]:
        """Optional. ``{"status": "ok", ...}`` or ``{"status": "unavailable", "reason": ...}`` for
        ``GET /api/v1/health`` (503 when unavailable). Must be cheap: probes call it every few seconds.
        A service without it is always reported ok."""
        ...

    def drain_node(self, node_id: str) -> dict[str, Any]:
        """Let the node finish its current task and give it no more (scale-in, maintenance); return
        the node as :meth:`nodes` lists it. ``NotFound`` for an unknown node, a 409
        ``LamaCleanerError`` for an offline one. Optional: ``/api/v1`` answers 404 for every node
        when a service has no such method (it has no nodes)."""
        ...
