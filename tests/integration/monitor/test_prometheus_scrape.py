"""A real Prometheus server (Debian's ``prometheus``) scrapes our ``/metrics`` and its query API returns our
queue depth, as it changes. The endpoint is the metrics server a standalone scheduler runs on its optional
port, serving a hub whose scheduler snapshots the test scripts."""

from __future__ import annotations

import pytest
import requests

from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.metrics.hub import MetricsHub
from lama_cleaner.plugins.monitor.metrics.server import MetricsServer
from tests.integration.monitor.prometheus_tools import prometheus
from tests.support.waiting import wait_for
from tests.unit.monitor.scheduler_stats import NodeInfo, QueueStats, SchedulerStats, TaskSample

pytestmark = pytest.mark.slow


def snapshot(depth: int) -> SchedulerStats:
    return SchedulerStats(
        time=1000.0,
        counters={"completed": 1},
        queues={"gpu": QueueStats("gpu", queued=depth, oldest_queued_age_s=3.0), "cpu": QueueStats("cpu")},
        nodes=[NodeInfo("n1", state="busy", queues=["gpu"])],
        recent=[TaskSample("t1", queue="gpu", name="lama", run_s=42.0, finished_at=999.0)],
    )


def query(prom_url: str, expr: str) -> list[dict]:
    reply = requests.get(prom_url + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def test_prometheus_reads_our_queue_depth(tmp_path) -> None:
    current = [snapshot(7)]
    hub = MetricsHub(MonitorConfig(), lambda: current[0], min_interval_s=0)
    server = MetricsServer(hub, "127.0.0.1", 0).start()
    try:
        with prometheus(tmp_path, f"127.0.0.1:{server.port}") as prom:
            depth = 'lama_cleaner_queue_depth{queue="gpu"}'

            def value_is(expected: str):
                result = query(prom.url, depth)
                return result and result[0]["value"][1] == expected and result

            (series,) = wait_for(lambda: value_is("7"), timeout=60, message="Prometheus to have scraped depth 7")
            assert series["metric"]["job"] == "lama-cleaner"
            current[0] = snapshot(11)
            wait_for(lambda: value_is("11"), timeout=60, message="Prometheus to see the depth change to 11")
            (up,) = query(prom.url, 'up{job="lama-cleaner"}')
            assert up["value"][1] == "1"
            # The run-time histogram arrives with our buckets: 42 s falls in the 60 s bucket, not +Inf.
            (bucket,) = query(prom.url, 'lama_cleaner_task_run_seconds_bucket{queue="gpu",model="lama",le="60.0"}')
            assert bucket["value"][1] == "1"
    finally:
        server.stop()


def test_metrics_server_answers_json_and_refuses_a_taken_port() -> None:
    hub = MetricsHub(MonitorConfig(), lambda: snapshot(3), process_metrics=False)
    server = MetricsServer(hub, "127.0.0.1", 0).start()
    try:
        doc = requests.get(server.url + "/api/v1/metrics", timeout=5).json()
        assert [(q["name"], q["queued"]) for q in doc["queues"]] == [("cpu", 0), ("gpu", 3)]
        assert requests.get(server.url + "/api/v1/metrics/history", timeout=5).json()["points"]
        assert requests.get(server.url + "/nope", timeout=5).status_code == 404
        assert requests.post(server.url + "/metrics", timeout=5).status_code == 405
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{server.port}"):
            MetricsServer(hub, "127.0.0.1", server.port).start()
    finally:
        server.stop()
