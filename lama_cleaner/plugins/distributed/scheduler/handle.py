"""The scheduler's public face: typed snapshots and the ``SchedulerHandle`` that other plugins use.

A monitor, an autoscaler or a dashboard asks one question (``stats()``), gives one order
(``drain_node``) or calls a plugin that lives beside the scheduler (``call``), and must not care
whether the scheduler runs in its process (:class:`LocalSchedulerHandle`) or behind a producer
connection (``producer.remote_handle.RemoteSchedulerHandle``). Both return the same frozen
dataclasses; :func:`stats_to_dict` and :func:`stats_from_dict` are the wire form (``STATS`` request).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol

NODE_JOINING = "joining"
"""A node that said HELLO but has not offered work on any queue yet (no READY)."""
NODE_EVENT_KINDS = ("joined", "idle", "busy", "draining", "offline", "left")


@dataclass(frozen=True)
class QueueStats:
    """One queue: tasks waiting (``unschedulable``: of those, how many no online node can run) and running."""

    name: str
    queued: int
    running: int
    oldest_queued_age_s: float | None
    unschedulable: int


@dataclass(frozen=True)
class NodeInfo:
    """One node as the scheduler sees it. ``models`` is empty when the node did not restrict them;
    ``left`` is True once it said BYE (left on purpose), False while online or when it vanished;
    ``current_task`` is the oldest of the ``tasks`` it holds (a node with ``slots`` > 1 may hold more)."""

    node_id: str
    name: str
    state: str  # joining|idle|busy|draining|offline
    queues: tuple[str, ...]
    models: tuple[str, ...]
    labels: dict[str, str]
    device: str | None
    current_task: str | None
    progress: float | None
    heartbeat_age_s: float | None
    loaded_models: tuple[str, ...]
    tasks_done: int
    left: bool
    tasks: tuple[str, ...] = ()
    """Every task the node holds, oldest first (``current_task`` is the first of them)."""
    slots: int = 1
    """How many tasks the node may hold at once (its pipeline depth)."""


@dataclass(frozen=True)
class TaskSample:
    """One finished task: how long it waited for its last attempt and how long that attempt ran."""

    task_id: str
    queue: str
    kind: str
    name: str
    status: str
    wait_s: float | None
    run_s: float | None
    finished_at: float
    node_id: str | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class SchedulerStats:
    """A snapshot: counters since the scheduler started, queues by name, nodes, recent finished tasks."""

    time: float
    counters: dict[str, int]
    queues: dict[str, QueueStats]
    nodes: tuple[NodeInfo, ...]
    recent: tuple[TaskSample, ...]


@dataclass(frozen=True)
class NodeEvent:
    """What the ``node_event`` hook receives: ``kind`` (one of :data:`NODE_EVENT_KINDS`), the node as
    it is after the change, and when the scheduler saw it."""

    kind: str
    node: NodeInfo
    time: float

    @property
    def node_id(self) -> str:
        return self.node.node_id


class SchedulerCallError(RuntimeError):
    """A ``scheduler_call`` plugin raised: the message names the call and the plugin's error."""


class SchedulerHandle(Protocol):
    """What other plugins may do with a scheduler, wherever it runs."""

    local: bool
    """True when the scheduler runs in this process."""

    @property
    def control_endpoint(self) -> str:
        """Where nodes reach the scheduler's control socket (``tcp://HOST:PORT``, a ``:0`` bind resolved): what
        a plugin that starts nodes (the autoscaler) tells them to connect to."""
        ...

    def stats(self) -> SchedulerStats: ...

    def drain_node(self, node_id: str) -> bool:
        """Drain a node (it finishes its task and takes no more); False for an unknown node."""
        ...

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Ask the ``scheduler_call`` plugin owning ``name``; LookupError when none answers it."""
        ...


class LocalSchedulerHandle:
    """The handle of a scheduler in this process; every method is safe from any thread.

    ``stats`` and ``drain_node`` are answered by the scheduler's loop thread (asked through its
    command queue, waited for with a deadline); ``call`` runs the plugins in the calling thread,
    which is never the loop's."""

    local = True

    def __init__(self, scheduler: Any, timeout: float = 5.0) -> None:
        # ``scheduler``: a ``service.Scheduler`` (not imported here: it imports this module)
        self._scheduler = scheduler
        self._timeout = timeout

    @property
    def control_endpoint(self) -> str:
        return self._scheduler.control_endpoint

    def stats(self) -> SchedulerStats:
        return self._scheduler.handle_stats(self._timeout)

    def drain_node(self, node_id: str) -> bool:
        return self._scheduler.handle_drain(node_id, self._timeout)

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return call_plugins(self._scheduler.plugin_manager, self._scheduler.config, name, payload)

    def __repr__(self) -> str:
        return f"LocalSchedulerHandle({self._scheduler.control_endpoint!r})"


def call_plugins(pm: Any, config: Any, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run the ``scheduler_call`` hook: the first plugin answering ``name`` wins.

    LookupError when no plugin answers (or the hook is not declared in ``pm``); a plugin's exception
    becomes :class:`SchedulerCallError` (the same on both sides of the wire)."""
    hook = getattr(getattr(pm, "hook", None), "scheduler_call", None)
    if hook is None:
        raise LookupError(f"no plugin answers scheduler call {name!r}")
    try:
        answer = hook(name=name, payload=dict(payload), config=config)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is the caller's error, not the scheduler's
        raise SchedulerCallError(f"scheduler call {name!r} failed: {type(exc).__name__}: {exc}") from exc
    if answer is None:
        raise LookupError(f"no plugin answers scheduler call {name!r}")
    if not isinstance(answer, dict):
        raise SchedulerCallError(f"scheduler call {name!r} returned {type(answer).__name__}, not a dict")
    return answer


class StatsBox:
    """The last snapshot the loop thread built, shared with callers under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: SchedulerStats | None = None

    def put(self, stats: SchedulerStats) -> None:
        with self._lock:
            self._stats = stats

    def get(self) -> SchedulerStats | None:
        with self._lock:
            return self._stats


def stats_to_dict(stats: SchedulerStats) -> dict[str, Any]:
    """The JSON form of a snapshot (what a ``STATS`` reply carries)."""
    return asdict(stats)


def stats_from_dict(data: dict[str, Any]) -> SchedulerStats:
    """A snapshot from its JSON form; unknown fields (a newer scheduler's) are ignored."""
    return SchedulerStats(
        time=float(data.get("time") or 0.0),
        counters={str(k): int(v) for k, v in (data.get("counters") or {}).items()},
        queues={str(k): _build(QueueStats, v) for k, v in (data.get("queues") or {}).items()},
        nodes=tuple(_build(NodeInfo, n) for n in data.get("nodes") or ()),
        recent=tuple(_build(TaskSample, s) for s in data.get("recent") or ()),
    )


def _build(cls: Any, data: dict[str, Any]) -> Any:
    known = cls.__dataclass_fields__
    values = {k: v for k, v in data.items() if k in known}
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)
