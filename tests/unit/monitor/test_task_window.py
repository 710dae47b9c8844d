"""The window of recent tasks behind the dashboard's percentiles and the failure-ratio and latency alerts."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.metrics.history import History
from lama_cleaner.plugins.monitor.metrics.hub import MetricsHub
from lama_cleaner.plugins.monitor.metrics.task_tally import TaskTally, percentile
from tests.unit.monitor.scheduler_stats import QueueStats, SchedulerStats, TaskSample


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        (list(range(1, 21)), 0.95, 19.0),
        (list(range(1, 61)), 0.95, 57.0),  # 0.95 * 60 is 57.000…01 in floating point; still rank 57
        (list(range(1, 101)), 0.5, 50.0),
    ],
)
def test_nearest_rank_percentile(values, q, expected) -> None:
    assert percentile([float(v) for v in values], q) == expected


def _run(i: int, queue: str = "gpu", status: str = "completed", at: float = 1000.0) -> TaskSample:
    return TaskSample(f"t{i}-{queue}-{at}", queue=queue, status=status, run_s=float(i), wait_s=i / 10, finished_at=at)


def test_window_figures_per_queue_and_overall() -> None:
    tally = TaskTally([1.0], window_s=60.0)
    for i in range(1, 21):
        tally.observe(_run(i))
    tally.observe(_run(100, status="failed"))
    tally.observe(_run(200, status="cancelled"))
    tally.observe(_run(3, queue="cpu"))
    overall, cpu, gpu = tally.window(now=1000.0, min_tasks=5)
    assert (overall.queue, cpu.queue, gpu.queue) == (None, "cpu", "gpu")
    assert (gpu.count, gpu.completed, gpu.failed, gpu.cancelled) == (22, 20, 1, 1)
    assert gpu.failure_ratio == pytest.approx(1 / 21)  # a cancellation is neither a success nor a failure
    assert gpu.run_p95_s == 19.0  # completed tasks only: the failed attempt's 100 s is not a latency
    assert gpu.run_p50_s == 10.0
    assert cpu.count == 1 and cpu.failure_ratio is None and cpu.run_p95_s is None  # 1 < min_tasks
    assert overall.count == 23


def test_old_samples_leave_the_window() -> None:
    tally = TaskTally([1.0], window_s=60.0)
    tally.observe(_run(1, status="failed", at=900.0))
    tally.observe(_run(2, at=990.0))
    (overall, gpu) = tally.window(now=1000.0, min_tasks=1)
    assert gpu.count == 1 and gpu.failure_ratio == 0.0
    assert tally.finished[("gpu", "inpaint", "cv2", "failed")] == 1  # the counter keeps it, the window does not


def test_hub_history_keeps_one_point_per_step_and_a_fixed_number() -> None:
    now = [1000.0]
    stats = [SchedulerStats(time=1000.0, queues={"gpu": QueueStats("gpu", queued=1)})]
    hub = MetricsHub(
        MonitorConfig(history_points=3), lambda: stats[0], clock=lambda: now[0], min_interval_s=0, history_step_s=5
    )
    for depth, t in enumerate([1000.0, 1002.0, 1005.0, 1010.0, 1015.0, 1020.0]):
        now[0] = t
        stats[0] = SchedulerStats(time=t, queues={"gpu": QueueStats("gpu", queued=depth)})
        hub.refresh()
    points = hub.history_points()
    assert [(p["time"], p["queues"]["gpu"]) for p in points] == [(1010.0, 3), (1015.0, 4), (1020.0, 5)]
    assert points[-1]["finished_total"] == {"completed": 0, "failed": 0, "cancelled": 0}


def test_history_refuses_points_closer_than_the_step() -> None:
    history = History(size=10, step_s=5)
    assert history.add({"time": 0.0})
    assert not history.add({"time": 4.9})
    assert history.add({"time": 5.0})


def test_the_window_keeps_the_newest_samples_up_to_its_cap_and_memory_stays_bounded(monkeypatch) -> None:
    from lama_cleaner.plugins.monitor.metrics import task_tally

    monkeypatch.setattr(task_tally, "WINDOW_CAP", 10)
    tally = TaskTally([1.0], window_s=1e9)
    for i in range(1, 36):  # run times 1..35, finishing in that order
        tally.observe(_run(i, at=float(i)))
        assert tally._groups[None].count <= 20  # noqa: SLF001 - never more than twice the cap between reads
    (overall, gpu) = tally.window(now=100.0, min_tasks=1)
    assert overall.count == gpu.count == 10
    assert (gpu.run_p50_s, gpu.run_p95_s) == (30.0, 35.0), "the newest ten: 26..35"


def test_a_queue_whose_samples_all_left_the_window_leaves_the_figures() -> None:
    tally = TaskTally([1.0], window_s=60.0)
    tally.observe(_run(1, queue="cpu", at=900.0))
    tally.observe(_run(2, queue="gpu", at=990.0))
    assert [f.queue for f in tally.window(now=950.0, min_tasks=1)] == [None, "cpu", "gpu"]
    assert [f.queue for f in tally.window(now=1000.0, min_tasks=1)] == [None, "gpu"]
    (overall,) = tally.window(now=2000.0, min_tasks=1)
    assert overall.count == 0 and overall.run_p50_s is None
