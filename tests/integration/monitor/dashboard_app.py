"""A tiny real Flask app serving the ``/monitor`` blueprint and a changing feed (polled, or over Socket.IO).

The feed is the real monitor pipeline (hub, alert tracker and dashboard sink) over a scripted scheduler:
each request for the feed is one step of a story: tasks queue up and complete, one fails with an error,
node ``n2`` goes offline at step ``OFFLINE_AT`` (its heartbeat stops), so the NodeOffline rule fires.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from flask import Flask, jsonify
from flask_socketio import SocketIO
from werkzeug.serving import make_server

from lama_cleaner.plugins.monitor.alerts.engine import AlertEngine
from lama_cleaner.plugins.monitor.alerts.rules import DEFAULT_RULES
from lama_cleaner.plugins.monitor.alerts.sinks.dashboard import DashboardSink
from lama_cleaner.plugins.monitor.alerts.state import AlertTracker
from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.dashboard.blueprint import monitor_blueprint
from lama_cleaner.plugins.monitor.dashboard.live import LiveFeed
from lama_cleaner.plugins.monitor.metrics.hub import MetricsHub
from tests.unit.monitor.scheduler_stats import NodeInfo, QueueStats, SchedulerStats, TaskSample

OFFLINE_AT = 4
FAILED_AT = 3
ERROR = "CUDA out of memory while inpainting a 4096x4096 image <b>not bold</b>"


@dataclass(frozen=True)
class FailedSample(TaskSample):
    """A sample with the error the dashboard shows (``TaskSample`` as promised has no such field yet)."""

    error: str | None = None


class Story:
    """The scripted scheduler: ``step`` advances once per feed request."""

    def __init__(self) -> None:
        self.step = 0
        self.start = time.time()
        self.recent: list[TaskSample] = []
        self.completed = 0
        self.failed = 0

    def advance(self) -> None:
        self.step += 1
        now = self.start + self.step * 2.0
        for i in range(3):  # three tasks finish per step, with run times that grow
            self.completed += 1
            self.recent.append(
                TaskSample(
                    f"task-{self.step}-{i}",
                    queue="gpu" if i else "cpu",
                    name="lama" if i else "cv2",
                    wait_s=0.2 * self.step,
                    run_s=1.5 + self.step + i,
                    finished_at=now - i * 0.1,
                    node_id="n1",
                )
            )
        if self.step == FAILED_AT:
            self.failed += 1
            self.recent.append(
                FailedSample(
                    "task-failed-0001-abcdef",
                    queue="gpu",
                    name="lama",
                    status="failed",
                    finished_at=now,
                    node_id="n2",
                    error=ERROR,
                )
            )
        self.recent = self.recent[-20:]

    def stats(self) -> SchedulerStats:
        now = self.start + self.step * 2.0
        offline = self.step >= OFFLINE_AT
        return SchedulerStats(
            time=now,
            counters={"completed": self.completed, "failed": self.failed, "retries": self.step},
            queues={
                "gpu": QueueStats("gpu", queued=(self.step * 5) % 17, running=1, oldest_queued_age_s=3.0 * self.step),
                "cpu": QueueStats("cpu", queued=self.step % 3, running=0),
            },
            nodes=[
                NodeInfo(
                    "n1",
                    state="busy",
                    queues=["gpu"],
                    device="cuda:0",
                    loaded_models=["lama"],
                    current_task=f"task-running-{self.step:04d}-0123456789",
                    progress=(self.step * 23) % 100,
                    heartbeat_age_s=0.4,
                    tasks_done=self.completed,
                ),
                NodeInfo(
                    "n2",
                    state="offline" if offline else "idle",
                    queues=["cpu", "gpu"],
                    device="cpu",
                    loaded_models=["cv2"],
                    heartbeat_age_s=2.0 * (self.step - OFFLINE_AT + 1) + 3 if offline else 0.6,
                    tasks_done=7,
                ),
            ],
            recent=list(self.recent),
        )


def make_app(poll_ms: int = 200, live: bool = False) -> tuple[Flask, Story]:
    """The app; with ``live`` it serves Socket.IO and pushes a document every 0.2 s instead of being polled."""
    story = Story()
    cfg = MonitorConfig(window_min_tasks=1)
    hub = MetricsHub(
        cfg, story.stats, clock=lambda: story.start + story.step * 2.0, min_interval_s=0, process_metrics=False
    )
    sink = DashboardSink()
    engine = AlertEngine(AlertTracker(DEFAULT_RULES, 3600), hub.signals, [], 60, clock=hub.clock)  # no timer here
    hub.alerts = sink.current
    lock = threading.Lock()

    def next_document() -> dict:
        with lock:
            story.advance()
            hub.refresh()
            sink.deliver(engine.evaluate_once())  # synchronously: the document must already show the alert
            return hub.document()

    app = Flask(__name__)
    app.register_blueprint(monitor_blueprint(poll_ms=0 if live else poll_ms, live=live))
    hub.http.install(app)

    @app.get("/api/v1/metrics")
    def metrics():
        return jsonify(next_document())

    @app.get("/api/v1/metrics/history")
    def history():
        return jsonify({"points": hub.history_points()})

    if live:
        socketio = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
        feed = LiveFeed(socketio, next_document, interval_s=0.2).register()
        app.extensions["test_live_feed"] = feed
    return app, story


class ServedApp:
    """``app`` on a free loopback port in a thread, for a real browser."""

    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        feed = self.server.app.extensions.get("test_live_feed")
        if feed is not None:
            feed.start()
        return self

    def __exit__(self, *exc: object) -> None:
        feed = self.server.app.extensions.get("test_live_feed")
        if feed is not None:
            feed.stop()
        self.server.shutdown()
        self.thread.join(5)
