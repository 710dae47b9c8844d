"""Stand-ins for the distributed plugin's ``SchedulerStats`` family, with exactly the promised field names.

The monitor reads snapshots by attribute only; these frozen dataclasses let its tests build any snapshot
without a scheduler. When the real classes land (``plugins/distributed/scheduler/handle.py``) the tests
can import those instead, field for field.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QueueStats:
    name: str
    queued: int = 0
    running: int = 0
    oldest_queued_age_s: float | None = None
    unschedulable: int = 0


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    state: str = "idle"
    queues: list[str] = field(default_factory=lambda: ["cpu"])
    models: list[str] = field(default_factory=lambda: ["cv2"])
    labels: dict[str, str] = field(default_factory=dict)
    device: str | None = "cpu"
    current_task: str | None = None
    progress: float | None = None
    heartbeat_age_s: float | None = 0.5
    loaded_models: list[str] = field(default_factory=list)
    tasks_done: int = 0


@dataclass(frozen=True)
class TaskSample:
    task_id: str
    queue: str = "cpu"
    kind: str = "inpaint"
    name: str = "cv2"
    status: str = "completed"
    wait_s: float | None = 0.1
    run_s: float | None = 1.0
    finished_at: float = 1000.0
    node_id: str | None = "n1"
    attempts: int = 1


@dataclass(frozen=True)
class SchedulerStats:
    time: float
    counters: dict[str, int] = field(default_factory=dict)
    queues: dict[str, QueueStats] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    recent: list[TaskSample] = field(default_factory=list)
