"""A scripted sequence of scheduler snapshots gives exact metric values, read with prometheus-client's parser.

The snapshots are built by hand (``scheduler_stats``), so every figure below is known: gauges follow the
latest snapshot, counters of finished tasks count each task once however many scrapes see it in the
scheduler's recent list, and tasks that left the list unseen are counted as missed.
"""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.metrics import names
from lama_cleaner.plugins.monitor.metrics.hub import MetricsHub
from tests.unit.monitor.exposition import family_types, parse_exposition, value
from tests.unit.monitor.scheduler_stats import NodeInfo, QueueStats, SchedulerStats, TaskSample


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Script:
    """The scheduler, as far as the hub can tell: returns the snapshot it is given, counts the reads."""

    def __init__(self) -> None:
        self.stats: SchedulerStats | Exception | None = None
        self.reads = 0

    def __call__(self) -> SchedulerStats:
        self.reads += 1
        if isinstance(self.stats, Exception):
            raise self.stats
        assert self.stats is not None
        return self.stats


def small_config() -> MonitorConfig:
    return MonitorConfig(task_buckets_s=[0.05, 1.0, 10.0], http_buckets_s=[0.1, 1.0], window_min_tasks=1)


T1 = TaskSample("t1", queue="gpu", name="lama", wait_s=0.2, run_s=4.0, finished_at=990.0, node_id="n1")
T2 = TaskSample("t2", queue="cpu", name="cv2", wait_s=0.01, run_s=0.03, finished_at=991.0, node_id="n2")
T3 = TaskSample("t3", queue="gpu", name="lama", status="failed", wait_s=0.5, run_s=12.0, finished_at=992.0, attempts=3)
T4 = TaskSample("t4", queue="gpu", name="lama", wait_s=2.0, run_s=0.5, finished_at=1001.0)
CANCELLED = TaskSample("t5", queue="cpu", name="cv2", status="cancelled", wait_s=3.0, run_s=None, finished_at=1002.0)


def first_snapshot() -> SchedulerStats:
    return SchedulerStats(
        time=1000.0,
        counters={
            "submitted": 10,
            "completed": 2,
            "failed": 1,
            "retries": 2,
            "requeued_on_node_loss": 1,
            "duplicates": 3,
        },
        queues={
            "gpu": QueueStats("gpu", queued=3, running=1, oldest_queued_age_s=12.5, unschedulable=1),
            "cpu": QueueStats("cpu"),
        },
        nodes=[
            NodeInfo("n1", state="busy", queues=["gpu"], current_task="t9", progress=0.4, heartbeat_age_s=0.25),
            NodeInfo("n2", state="idle", queues=["cpu", "gpu"], heartbeat_age_s=0.5),
            NodeInfo("n3", state="offline", queues=["cpu"], heartbeat_age_s=7.0),
        ],
        recent=[T1, T2, T3],
    )


@pytest.fixture
def setup():
    script, clock = Script(), Clock()
    hub = MetricsHub(small_config(), script, clock=clock, process_metrics=False)
    return hub, script, clock


def scrape(hub: MetricsHub) -> dict:
    body, content_type = hub.exposition()
    assert content_type.startswith("text/plain; version=")
    return parse_exposition(body.decode())


def test_gauges_follow_the_snapshot(setup) -> None:
    hub, script, _ = setup
    script.stats = first_snapshot()
    s = scrape(hub)
    assert value(s, "lama_cleaner_scheduler_up") == 1
    assert value(s, "lama_cleaner_queue_depth", queue="gpu") == 3
    assert value(s, "lama_cleaner_queue_depth", queue="cpu") == 0
    assert value(s, "lama_cleaner_queue_running_tasks", queue="gpu") == 1
    assert value(s, "lama_cleaner_queue_oldest_task_age_seconds", queue="gpu") == 12.5
    assert value(s, "lama_cleaner_queue_oldest_task_age_seconds", queue="cpu") == 0
    assert value(s, "lama_cleaner_queue_unschedulable_tasks", queue="gpu") == 1
    assert {
        state: value(s, "lama_cleaner_nodes", state=state)
        for state in ("joining", "idle", "busy", "draining", "offline")
    } == {
        "joining": 0,
        "idle": 1,
        "busy": 1,
        "draining": 0,
        "offline": 1,
    }
    assert value(s, "lama_cleaner_queue_nodes", queue="gpu", state="busy") == 1
    assert value(s, "lama_cleaner_queue_nodes", queue="gpu", state="idle") == 1  # n2 serves both queues
    assert value(s, "lama_cleaner_queue_nodes", queue="cpu", state="idle") == 1
    assert value(s, "lama_cleaner_queue_nodes", queue="cpu", state="offline") == 1
    assert value(s, "lama_cleaner_queue_nodes", queue="gpu", state="offline") == 0
    assert value(s, "lama_cleaner_node_heartbeat_age_seconds", node="n3") == 7.0


def test_scheduler_counters_map_to_named_counters(setup) -> None:
    hub, script, _ = setup
    script.stats = first_snapshot()
    s = scrape(hub)
    assert value(s, "lama_cleaner_task_retries_total") == 2
    assert value(s, "lama_cleaner_task_requeues_total", reason="node_lost") == 1
    assert value(s, "lama_cleaner_task_requeues_total", reason="handed_back") == 0  # known, not yet counted: 0
    assert value(s, "lama_cleaner_duplicate_messages_discarded_total") == 3
    assert value(s, "lama_cleaner_node_heartbeats_missed_total") == 0
    assert value(s, "lama_cleaner_task_cancellations_total") == 0
    # Counters without a family of their own keep their scheduler name as a label.
    assert value(s, "lama_cleaner_scheduler_events_total", event="submitted") == 10
    assert value(s, "lama_cleaner_scheduler_events_total", event="completed") == 2
    assert ("lama_cleaner_scheduler_events_total", (("event", "retries"),)) not in s


def test_finished_tasks_are_counted_once_across_scrapes(setup) -> None:
    hub, script, clock = setup
    script.stats = first_snapshot()
    scrape(hub)
    clock.now += 5  # past the hub's sharing interval: the second scrape reads the scheduler again
    s = scrape(hub)  # the same recent list again: nothing new
    assert script.reads == 2
    assert (
        value(s, "lama_cleaner_tasks_finished_total", queue="gpu", kind="inpaint", model="lama", status="completed")
        == 1
    )
    assert (
        value(s, "lama_cleaner_tasks_finished_total", queue="gpu", kind="inpaint", model="lama", status="failed") == 1
    )
    assert (
        value(s, "lama_cleaner_tasks_finished_total", queue="cpu", kind="inpaint", model="cv2", status="completed") == 1
    )

    # t1 leaves the list, t4 and a cancelled t5 arrive.
    script.stats = SchedulerStats(
        time=1003.0,
        counters={"completed": 3, "failed": 1, "cancelled": 1},
        queues={"gpu": QueueStats("gpu"), "cpu": QueueStats("cpu")},
        recent=[T2, T3, T4, CANCELLED],
    )
    clock.now += 5
    s = scrape(hub)
    assert (
        value(s, "lama_cleaner_tasks_finished_total", queue="gpu", kind="inpaint", model="lama", status="completed")
        == 2
    )
    assert (
        value(s, "lama_cleaner_tasks_finished_total", queue="cpu", kind="inpaint", model="cv2", status="cancelled") == 1
    )
    assert value(s, "lama_cleaner_task_samples_missed_total") == 0

    # Run times of gpu/lama: 4.0 (t1), 12.0 (t3), 0.5 (t4) with buckets 0.05, 1, 10.
    run = {
        le: value(s, "lama_cleaner_task_run_seconds_bucket", queue="gpu", model="lama", le=le)
        for le in ("0.05", "1.0", "10.0", "+Inf")
    }
    assert run == {"0.05": 0, "1.0": 1, "10.0": 2, "+Inf": 3}
    assert value(s, "lama_cleaner_task_run_seconds_count", queue="gpu", model="lama") == 3
    assert value(s, "lama_cleaner_task_run_seconds_sum", queue="gpu", model="lama") == pytest.approx(16.5)
    # The cancelled task waited (3.0 s) but never ran: a wait sample and no run sample.
    assert value(s, "lama_cleaner_task_queue_wait_seconds_count", queue="cpu", model="cv2") == 2
    assert value(s, "lama_cleaner_task_queue_wait_seconds_sum", queue="cpu", model="cv2") == pytest.approx(3.01)
    assert value(s, "lama_cleaner_task_run_seconds_count", queue="cpu", model="cv2") == 1
    # A value equal to a bound falls in that bucket (Prometheus's "le").
    assert value(s, "lama_cleaner_task_queue_wait_seconds_bucket", queue="gpu", model="lama", le="1.0") == 2


def test_tasks_that_left_the_list_unseen_are_counted_as_missed(setup) -> None:
    hub, script, clock = setup
    script.stats = first_snapshot()  # baseline: 3 finished tasks
    scrape(hub)
    # Four more tasks finished; the list shows only one of them.
    script.stats = SchedulerStats(time=1010.0, counters={"completed": 5, "failed": 2}, recent=[T4])
    clock.now += 5
    s = scrape(hub)
    assert value(s, "lama_cleaner_task_samples_missed_total") == 3
    # A scheduler restart resets its counters: a new baseline, not a negative count.
    script.stats = SchedulerStats(time=1020.0, counters={"completed": 1}, recent=[CANCELLED])
    clock.now += 5
    s = scrape(hub)
    assert value(s, "lama_cleaner_task_samples_missed_total") == 3


def test_unreadable_scheduler_is_a_figure_not_an_error(setup) -> None:
    hub, script, clock = setup
    script.stats = first_snapshot()
    scrape(hub)
    script.stats = ConnectionError("scheduler did not answer within 2.0s")
    clock.now += 5
    text = hub.exposition()[0].decode()
    s = parse_exposition(text)
    assert value(s, "lama_cleaner_scheduler_up") == 0
    assert not any(name == "lama_cleaner_queue_depth" for name, _ in s)  # no stale gauges
    # What was counted stays counted.
    assert (
        value(s, "lama_cleaner_tasks_finished_total", queue="gpu", kind="inpaint", model="lama", status="failed") == 1
    )
    doc = hub.document()
    assert doc["scheduler"] == {
        "present": True,
        "up": False,
        "error": "ConnectionError: scheduler did not answer within 2.0s",
    }
    assert [sig for sig in doc["signals"] if sig["name"] == "scheduler_up"] == [
        {"name": "scheduler_up", "labels": {}, "value": 0.0}
    ]


def test_readings_are_shared_within_the_interval(setup) -> None:
    hub, script, clock = setup
    script.stats = first_snapshot()
    for _ in range(5):
        scrape(hub)
        hub.document()
    assert script.reads == 1
    clock.now += 1.0
    scrape(hub)
    assert script.reads == 2


def test_without_a_scheduler_only_process_figures_are_exported() -> None:
    hub = MetricsHub(small_config(), None, process_metrics=False)
    hub.record_scale_decision("up", "gpu")
    hub.record_scale_decision("up", "gpu")
    s = scrape(hub)
    assert not any(name.startswith("lama_cleaner_scheduler_up") for name, _ in s)
    assert value(s, "lama_cleaner_scale_decisions_total", action="up", queue="gpu") == 2
    assert hub.document()["signals"] == []


def test_families_have_declared_names_types_and_labels(setup) -> None:
    hub, script, _ = setup
    script.stats = first_snapshot()
    hub.http.record("GET", "/x", 200, 0.01)
    hub.record_scale_decision("down", "cpu")
    text = hub.exposition()[0].decode()
    types = family_types(text)
    declared = {spec.name.removesuffix("_total"): spec for spec in names.ALL_METRICS}
    assert set(types) == set(declared)  # every family is declared, every declared family is exported
    for name, kind in types.items():
        assert kind == declared[name].kind
        assert name.startswith("lama_cleaner_")
    for (sample, labels), _ in parse_exposition(text).items():
        base = sample.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum").removesuffix("_total")
        spec = declared[base]
        got = {k for k, _ in labels} - {"le"}
        assert got == set(spec.labels), f"{sample} has labels {got}, declared {spec.labels}"


def test_process_metrics_are_exported_by_default() -> None:
    hub = MetricsHub(small_config(), None)
    types = family_types(hub.exposition()[0].decode())
    assert "python_info" in types
