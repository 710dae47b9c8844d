"""The evaluation job and the sink threads, with recording sinks and an injected clock."""

from __future__ import annotations

import logging
import threading

from lama_cleaner.plugins.monitor.alerts.engine import AlertEngine
from lama_cleaner.plugins.monitor.alerts.rules import Rule
from lama_cleaner.plugins.monitor.alerts.sinks import Delivery
from lama_cleaner.plugins.monitor.alerts.sinks.configured import configured_sinks
from lama_cleaner.plugins.monitor.alerts.sinks.dashboard import DashboardSink
from lama_cleaner.plugins.monitor.alerts.sinks.log import LogSink
from lama_cleaner.plugins.monitor.alerts.state import AlertTracker
from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.metrics.signals import Signal
from tests.support.waiting import wait_for

RULE = Rule("Backlog", "queue_depth", ">", 10, for_s=20, summary="{value:.0f} waiting in {queue}")
GPU = (("queue", "gpu"),)


class Recorder:
    def __init__(self, name: str = "recorder", every_evaluation: bool = False, fail: bool = False) -> None:
        self.name = name
        self.every_evaluation = every_evaluation
        self.fail = fail
        self.deliveries: list[Delivery] = []
        self.closed = False

    def deliver(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self.fail:
            raise RuntimeError("sink bug")

    def close(self) -> None:
        self.closed = True


class Scripted:
    """Signals and time, set by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.depth = 0.0

    def clock(self) -> float:
        return self.now

    def signals(self) -> list[Signal]:
        return [Signal("queue_depth", GPU, self.depth)]


def test_evaluations_reach_every_sink_even_when_one_fails() -> None:
    script = Scripted()
    noisy, broken, mirror = Recorder("noisy"), Recorder("broken", fail=True), Recorder("mirror", every_evaluation=True)
    engine = AlertEngine(
        AlertTracker([RULE], 3600), script.signals, [noisy, broken, mirror], interval_s=60, clock=script.clock
    )
    for runner in engine.runners:
        runner.start()
    try:
        for now, depth in [(0, 50), (10, 50), (20, 50), (30, 2)]:
            script.now, script.depth = now, depth
            engine.evaluate_once()
        assert engine.wait_idle(5)
    finally:
        engine.stop()
    kinds = [[n.kind for n in d.notifications] for d in noisy.deliveries]
    assert kinds == [["firing"], ["resolved"]]  # only deliveries with something to say
    assert [[n.kind for n in d.notifications] for d in broken.deliveries] == kinds  # kept going after raising
    assert [d.at for d in mirror.deliveries] == [0, 10, 20, 30]  # every evaluation, for state mirrors
    assert [a.state for a in mirror.deliveries[1].active] == ["pending"]
    assert all(r.closed for r in (noisy, broken, mirror))


def test_the_job_runs_at_start_and_then_every_interval() -> None:
    script = Scripted()
    mirror = Recorder(every_evaluation=True)
    engine = AlertEngine(AlertTracker([RULE], 3600), script.signals, [mirror], interval_s=0.1).start()
    try:
        wait_for(lambda: len(mirror.deliveries) >= 3, timeout=10, message="three evaluations")
    finally:
        engine.stop()
    alive = {t.name for t in threading.enumerate()}
    assert "APScheduler" not in alive and not any(name.startswith("lama-cleaner-alert-sink") for name in alive)


def test_first_evaluation_does_not_wait_an_interval() -> None:
    script = Scripted()
    mirror = Recorder(every_evaluation=True)
    engine = AlertEngine(AlertTracker([RULE], 3600), script.signals, [mirror], interval_s=3600).start()
    try:
        wait_for(lambda: mirror.deliveries, timeout=10, message="the first evaluation")
    finally:
        engine.stop()


def test_log_sink_writes_one_line_per_notification(caplog) -> None:
    tracker = AlertTracker([Rule("NodeOffline", "node_offline", "==", 1, severity="critical")], 3600)
    notes = tracker.evaluate([Signal("node_offline", (("node", "n3"),), 1.0)], 5.0)
    notes += tracker.evaluate([], 6.0)
    with caplog.at_level(logging.INFO, logger="lama_cleaner.alerts"):
        LogSink().deliver(Delivery(tuple(notes), (), 6.0))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "alert NodeOffline firing (node=n3): node_offline == 1 (now 1)"),
        ("INFO", "alert NodeOffline resolved (node=n3): node_offline == 1 (now 1)"),
    ]
    assert caplog.records[0].alert == "NodeOffline"


def test_dashboard_sink_shows_active_then_recently_resolved() -> None:
    tracker = AlertTracker([RULE], 3600)
    sink = DashboardSink()
    for now, depth in [(0, 50), (20, 50), (30, 50)]:
        notes = tracker.evaluate([Signal("queue_depth", GPU, depth)], now)
        sink.deliver(Delivery(tuple(notes), tuple(tracker.active()), now))
    assert [(a["rule"], a["state"], a["summary"]) for a in sink.current()] == [
        ("Backlog", "firing", "50 waiting in gpu")
    ]
    notes = tracker.evaluate([Signal("queue_depth", GPU, 3)], 40)
    sink.deliver(Delivery(tuple(notes), tuple(tracker.active()), 40))
    assert [(a["state"], a["ends_at"]) for a in sink.current()] == [("resolved", 40)]


def test_configured_sinks_follow_the_settings() -> None:
    cfg = MonitorConfig(
        alert_sinks=["dashboard", "webhook", "alertmanager", "log"],
        webhook_url="http://127.0.0.1:9/hook",
        alertmanager_url="http://127.0.0.1:9093/",
    )
    sinks = configured_sinks(cfg)
    assert [s.name for s in sinks] == ["dashboard", "webhook", "alertmanager", "log"]
    assert sinks[2].url == "http://127.0.0.1:9093/api/v2/alerts"
    for sink in sinks:
        sink.close()
