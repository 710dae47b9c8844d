"""The monitor assembled from its settings, in a real web server over real HTTP: routes, alerts, sinks, port."""

from __future__ import annotations

import threading

import pytest
import requests
from flask import Flask

from lama_cleaner.plugins.monitor.config import MonitorConfig, validate_monitor
from lama_cleaner.plugins.monitor.runtime import MonitorRuntime
from tests.integration.monitor.dashboard_app import ServedApp
from tests.integration.monitor.receiver import Receiver
from tests.support.server_process import free_port
from tests.support.waiting import wait_for
from tests.unit.monitor.exposition import parse_exposition, value
from tests.unit.monitor.scheduler_stats import NodeInfo, QueueStats, SchedulerStats


def stats() -> SchedulerStats:
    return SchedulerStats(
        time=1000.0,
        queues={"gpu": QueueStats("gpu", queued=4)},
        nodes=[NodeInfo("n1", state="idle", queues=["gpu"]), NodeInfo("n3", state="offline", queues=["gpu"])],
    )


def settings(**changes) -> MonitorConfig:
    cfg = MonitorConfig(evaluation_interval_s=0.2, webhook_backoff_s=0.05, **changes)
    validate_monitor(cfg)
    return cfg


def alert_names(url: str) -> list[tuple[str, str]]:
    doc = requests.get(url + "/api/v1/metrics", timeout=5).json()
    return [(a["rule"], a["state"]) for a in doc["alerts"]]


def monitor_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("lama-cleaner") or t.name == "APScheduler"}


def test_web_server_with_the_scheduler_serves_figures_and_sends_alerts() -> None:
    before = monitor_threads()
    with Receiver() as hook:
        runtime = MonitorRuntime(settings(alert_sinks=["log", "dashboard", "webhook"], webhook_url=hook.url), stats)
        app = Flask(__name__)
        runtime.install(app)
        with ServedApp(app) as served:
            runtime.start()
            try:
                wait_for(lambda: ("NodeOffline", "firing") in alert_names(served.url), 10, "the alert on the page")
                wait_for(lambda: [p["kind"] for p in hook.accepted] == ["firing"], 10, "the webhook notice")
                assert hook.accepted[0]["alert"]["labels"]["node"] == "n3"

                reply = requests.get(served.url + "/metrics", timeout=5)
                assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                s = parse_exposition(reply.text)
                assert value(s, "lama_cleaner_queue_depth", queue="gpu") == 4
                assert value(s, "lama_cleaner_nodes", state="offline") == 1
                assert (
                    value(s, "lama_cleaner_http_requests_total", method="GET", route="/api/v1/metrics", status="200")
                    >= 1
                )
                openmetrics = requests.get(
                    served.url + "/metrics",
                    headers={"Accept": "application/openmetrics-text; version=1.0.0"},
                    timeout=5,
                )
                assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
                assert openmetrics.text.endswith("# EOF\n")
                assert requests.get(served.url + "/monitor", timeout=5).status_code == 200
                assert requests.get(served.url + "/api/v1/metrics/history", timeout=5).json()["points"]
            finally:
                runtime.stop()
                runtime.stop()  # twice is fine
    assert monitor_threads() <= before


def test_a_web_server_reading_a_standalone_scheduler_alerts_on_its_page_only() -> None:
    with Receiver() as hook:
        runtime = MonitorRuntime(settings(alert_sinks=["webhook"], webhook_url=hook.url), stats, owns_alerts=False)
        app = Flask(__name__)
        runtime.install(app)
        with ServedApp(app) as served:
            runtime.start()
            try:
                wait_for(lambda: ("NodeOffline", "firing") in alert_names(served.url), 10, "the alert on the page")
                assert runtime.engine is not None
                assert runtime.engine.wait_idle(5)
            finally:
                runtime.stop()
    assert hook.attempts == []  # the scheduler's own process notifies, not this one


def test_standalone_scheduler_serves_its_own_port() -> None:
    port = free_port()
    runtime = MonitorRuntime(settings(metrics_port=port), stats).start(metrics_port=True)
    try:
        s = parse_exposition(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        assert value(s, "lama_cleaner_queue_depth", queue="gpu") == 4
    finally:
        runtime.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_without_a_scheduler_there_is_nothing_to_alert_on() -> None:
    runtime = MonitorRuntime(settings(), None)
    assert runtime.engine is None and runtime.dashboard is None
    app = Flask(__name__)
    runtime.install(app)
    runtime.start()
    doc = app.test_client().get("/api/v1/metrics").get_json()
    assert doc["scheduler"]["present"] is False and doc["alerts"] == []
    runtime.stop()
