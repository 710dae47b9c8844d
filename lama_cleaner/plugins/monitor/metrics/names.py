"""Every metric the monitor exports: name, type, help and label names, in one table.

Names follow Prometheus's conventions: the ``lama_cleaner_`` prefix, base units (seconds) as a suffix,
counters ending in ``_total``, and labels of bounded cardinality only (queue, model, state, status, route;
never a task id). ``docs/monitoring.md`` lists the same table, and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """What one metric family is."""

    name: str
    kind: str  # "gauge", "counter" or "histogram"
    help: str
    labels: tuple[str, ...] = ()


# ------------------------------------------------------------------ gauges read from the snapshot
QUEUE_DEPTH = MetricSpec("lama_cleaner_queue_depth", "gauge", "Tasks waiting in the queue.", ("queue",))
QUEUE_RUNNING = MetricSpec(
    "lama_cleaner_queue_running_tasks", "gauge", "Tasks of the queue running on a node.", ("queue",)
)
QUEUE_OLDEST_AGE = MetricSpec(
    "lama_cleaner_queue_oldest_task_age_seconds",
    "gauge",
    "Age of the oldest task waiting in the queue (0 when none waits).",
    ("queue",),
)
QUEUE_UNSCHEDULABLE = MetricSpec(
    "lama_cleaner_queue_unschedulable_tasks",
    "gauge",
    "Waiting tasks that no online node can run (no node has the queue, model or plugin).",
    ("queue",),
)
NODES = MetricSpec("lama_cleaner_nodes", "gauge", "Nodes known to the scheduler, by state.", ("state",))
QUEUE_NODES = MetricSpec(
    "lama_cleaner_queue_nodes",
    "gauge",
    "Nodes serving the queue, by state (a node may serve several).",
    ("queue", "state"),
)
NODE_HEARTBEAT_AGE = MetricSpec(
    "lama_cleaner_node_heartbeat_age_seconds", "gauge", "Time since the node's last heartbeat.", ("node",)
)
SCHEDULER_UP = MetricSpec(
    "lama_cleaner_scheduler_up", "gauge", "1 when the last snapshot of the scheduler succeeded, else 0."
)

# ------------------------------------------------------------------ counters the scheduler keeps
TASK_RETRIES = MetricSpec("lama_cleaner_task_retries_total", "counter", "Failed attempts that were retried.")
TASK_CANCELLATIONS = MetricSpec("lama_cleaner_task_cancellations_total", "counter", "Tasks cancelled.")
TASK_REQUEUES = MetricSpec(
    "lama_cleaner_task_requeues_total",
    "counter",
    "Tasks put back in their queue without being charged an attempt, by reason.",
    ("reason",),
)
DUPLICATES_DISCARDED = MetricSpec(
    "lama_cleaner_duplicate_messages_discarded_total",
    "counter",
    "Messages the scheduler discarded as duplicates (a resent result, a second submit of one key).",
)
HEARTBEATS_MISSED = MetricSpec(
    "lama_cleaner_node_heartbeats_missed_total", "counter", "Heartbeats a node was expected to send and did not."
)
SCHEDULER_EVENTS = MetricSpec(
    "lama_cleaner_scheduler_events_total",
    "counter",
    "Other scheduler counters (submitted, dispatched, rejected_overloaded, ...), by name.",
    ("event",),
)

# ------------------------------------------------------------------ counted from finished-task samples
TASKS_FINISHED = MetricSpec(
    "lama_cleaner_tasks_finished_total",
    "counter",
    "Tasks that reached a final status; `model` is the model or image-plugin name.",
    ("queue", "kind", "model", "status"),
)
TASK_QUEUE_WAIT = MetricSpec(
    "lama_cleaner_task_queue_wait_seconds",
    "histogram",
    "Time from submission to the start of the last attempt.",
    ("queue", "model"),
)
TASK_RUN = MetricSpec(
    "lama_cleaner_task_run_seconds", "histogram", "Run time of the last attempt on its node.", ("queue", "model")
)
TASK_SAMPLES_MISSED = MetricSpec(
    "lama_cleaner_task_samples_missed_total",
    "counter",
    "Finished tasks the scheduler counted but whose sample left its recent list before it was read (their "
    "status and durations are missing above; read the metrics more often).",
)

# ------------------------------------------------------------------ recorded in this process
SCALE_DECISIONS = MetricSpec(
    "lama_cleaner_scale_decisions_total", "counter", "Scaling decisions of the autoscale plugin.", ("action", "queue")
)
HTTP_REQUESTS = MetricSpec(
    "lama_cleaner_http_requests_total",
    "counter",
    "HTTP requests answered, by method, route template and status code.",
    ("method", "route", "status"),
)
HTTP_DURATION = MetricSpec(
    "lama_cleaner_http_request_duration_seconds",
    "histogram",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    QUEUE_DEPTH,
    QUEUE_RUNNING,
    QUEUE_OLDEST_AGE,
    QUEUE_UNSCHEDULABLE,
    NODES,
    QUEUE_NODES,
    NODE_HEARTBEAT_AGE,
    SCHEDULER_UP,
    TASK_RETRIES,
    TASK_CANCELLATIONS,
    TASK_REQUEUES,
    DUPLICATES_DISCARDED,
    HEARTBEATS_MISSED,
    SCHEDULER_EVENTS,
    TASKS_FINISHED,
    TASK_QUEUE_WAIT,
    TASK_RUN,
    TASK_SAMPLES_MISSED,
    SCALE_DECISIONS,
    HTTP_REQUESTS,
    HTTP_DURATION,
)

SCHEDULER_COUNTERS: dict[str, tuple[MetricSpec, dict[str, str]]] = {
    "retries": (TASK_RETRIES, {}),
    "cancelled": (TASK_CANCELLATIONS, {}),
    "requeued_on_node_loss": (TASK_REQUEUES, {"reason": "node_lost"}),
    "handed_back": (TASK_REQUEUES, {"reason": "handed_back"}),
    "duplicates": (DUPLICATES_DISCARDED, {}),
    "heartbeats_missed": (HEARTBEATS_MISSED, {}),
}
"""Which ``SchedulerStats.counters`` key feeds which family (and with which fixed labels). Every key of the
table is exported, 0 while the scheduler has not counted it; any other key goes to ``SCHEDULER_EVENTS``."""

COUNTER_JSON_NAMES: dict[str, str] = {
    "retries": "retries",
    "cancelled": "cancellations",
    "requeued_on_node_loss": "requeues_node_lost",
    "handed_back": "requeues_handed_back",
    "duplicates": "duplicates_discarded",
    "heartbeats_missed": "heartbeats_missed",
}
"""The same counters under their names in ``/api/v1/metrics``'s ``counters`` object."""
