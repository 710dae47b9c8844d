"""The monitor as a built-in plugin: found by name, its section and flags, its hooks, and who starts what.

The scheduler handle is a stand-in with the promised shape (``local``, ``stats()``); the runtimes are real
(hub, alert engine, Flask routes), only no scheduler process runs.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from loguru import logger

from lama_cleaner.config import Config, ConfigError, validate_config
from lama_cleaner.plugins.builtin import builtin_plugins
from lama_cleaner.plugins.manager import build_plugin_manager
from lama_cleaner.plugins.monitor import plugin
from lama_cleaner.plugins.monitor.config import MonitorConfig
from lama_cleaner.plugins.monitor.logs.intercept import InterceptHandler
from lama_cleaner.plugins.monitor.process import MonitorProcess
from lama_cleaner.tasks import TaskEvent
from tests.unit.monitor.scheduler_stats import NodeInfo, QueueStats, SchedulerStats


class Handle:
    """A scheduler handle with the promised shape."""

    def __init__(self, local: bool) -> None:
        self.local = local
        self.reads = 0

    def stats(self) -> SchedulerStats:
        self.reads += 1
        return SchedulerStats(time=1000.0, queues={"cpu": QueueStats("cpu", queued=2)}, nodes=[NodeInfo("n1")])


class Executor:
    def __init__(self, handle: Handle | None) -> None:
        if handle is not None:
            self.scheduler_handle = handle


def no_sinks(config: Config) -> list:
    return []


@pytest.fixture
def process() -> Iterator[MonitorProcess]:
    before = {t.name for t in threading.enumerate()}
    proc = MonitorProcess()
    yield proc
    proc.shutdown()
    assert {t.name for t in threading.enumerate() if t.name.startswith("lama-cleaner")} <= before


def test_it_is_a_built_in_plugin_enabled_by_name() -> None:
    assert builtin_plugins()["monitor"] == "lama_cleaner.plugins.monitor.plugin"
    pm = build_plugin_manager(["distributed", "monitor"], autoload=False)
    assert pm.has_plugin("monitor")
    assert pm.hook.alert_sinks.get_hookimpls() == []  # published: callable, nobody implements it yet
    alone = build_plugin_manager(["monitor"], autoload=False)  # classic mode: the scheduler hooks are optional
    assert alone.has_plugin("monitor")


def test_its_section_is_known_checked_and_named_in_errors() -> None:
    config = Config()
    assert isinstance(config.monitor, MonitorConfig)
    config.monitor.log_level = "debug"
    validate_config(config)
    assert config.monitor.log_level == "DEBUG"
    config.monitor.alert_sinks = ["webhook"]
    with pytest.raises(ConfigError, match=r"monitor\.webhook_url must be set"):
        validate_config(config)


@pytest.mark.parametrize("command", ["serve", "batch", "scheduler", "node"])
def test_log_flags_set_the_section_and_only_when_typed(command: str) -> None:
    parser = argparse.ArgumentParser()
    plugin.add_cli_options(parser, command)
    config = Config()
    plugin.configure(config, parser.parse_args([]))
    assert (config.monitor.log_format, config.monitor.log_dir) == ("text", None)
    plugin.configure(config, parser.parse_args(["--log-json", "--log-dir", "/tmp/logs"]))
    assert (config.monitor.log_format, config.monitor.log_dir) == ("json", "/tmp/logs")
    has_port = "--metrics-port" in parser._option_string_actions
    assert has_port == (command == "scheduler")


def test_startup_routes_logging_through_loguru_and_shutdown_gives_it_back(process: MonitorProcess) -> None:
    config = Config()
    before, level = list(logging.root.handlers), logging.root.level
    process.startup(config, "node")
    assert any(isinstance(h, InterceptHandler) for h in logging.root.handlers)
    process.shutdown()
    assert logging.root.handlers == before and logging.root.level == level
    process.shutdown()  # twice, or without a startup: nothing to do


def test_the_embedded_scheduler_and_the_web_routes_share_one_runtime(process: MonitorProcess) -> None:
    config = Config()
    handle = Handle(local=True)
    runtime = process.scheduler_started(handle, config, no_sinks)
    assert runtime.engine is not None and runtime.server is None  # alerts here, no port of its own
    app = Flask(__name__)
    process.register_routes(app, None, config, Executor(handle), no_sinks)
    assert app.extensions["lama_cleaner_monitor"] is runtime
    assert process.runtimes() == [runtime]
    doc = app.test_client().get("/api/v1/metrics").get_json()
    assert doc["scheduler"]["present"] is True and doc["queues"][0]["queued"] == 2
    process.scheduler_stopped(handle)
    assert not runtime.started


def test_a_web_server_reading_a_remote_scheduler_alerts_on_its_page_only(process: MonitorProcess) -> None:
    app = Flask(__name__)
    process.register_routes(app, None, Config(), Executor(Handle(local=False)), no_sinks)
    runtime = app.extensions["lama_cleaner_monitor"]
    assert runtime.engine is not None and runtime.dashboard is not None
    assert [type(r.sink).__name__ for r in runtime.engine.runners] == ["DashboardSink"]


def test_classic_mode_serves_figures_without_a_scheduler(process: MonitorProcess) -> None:
    app = Flask(__name__)
    process.register_routes(app, None, Config(), Executor(None), no_sinks)
    client = app.test_client()
    assert client.get("/api/v1/metrics").get_json()["scheduler"]["present"] is False
    assert b"lama_cleaner_http_requests_total" in client.get("/metrics").data
    assert client.get("/monitor").status_code == 200


def test_a_standalone_scheduler_serves_its_metrics_port(process: MonitorProcess) -> None:
    import requests

    from tests.support.server_process import free_port

    config = Config()
    config.monitor.metrics_port = free_port()
    process.role = "scheduler"
    handle = Handle(local=True)
    runtime = process.scheduler_started(handle, config, no_sinks)
    assert runtime.server is not None
    reply = requests.get(f"http://127.0.0.1:{config.monitor.metrics_port}/metrics", timeout=5)
    assert 'lama_cleaner_queue_depth{queue="cpu"} 2.0' in reply.text
    process.scheduler_stopped(handle)
    assert runtime.server is None


def test_task_events_become_the_task_path(process: MonitorProcess, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lama_cleaner.tasks"):
        process.observe(TaskEvent("t-1", "queued", name="cv2", queue="cpu", at=10.0))
        process.observe(TaskEvent("t-1", "processing", name="cv2", queue="cpu", node="n1", attempts=1, at=10.5))
        process.observe(TaskEvent("t-1", "completed", name="cv2", queue="cpu", node="n1", attempts=1, at=11.0))
    assert [r.getMessage().split(":")[0].split(" on ")[0] for r in caplog.records] == [
        "task accepted",
        "task started",
        "task completed",
    ]
    assert {r.task_id for r in caplog.records} == {"t-1"}


def test_task_path_level_moves_the_path_but_not_failures(process: MonitorProcess) -> None:
    config = Config()
    config.monitor.task_path_level = "DEBUG"
    config.monitor.log_level = "DEBUG"
    process.startup(config, "scheduler")
    seen: list[tuple[str, str, str, str | None]] = []
    sink = logger.add(
        lambda m: seen.append(
            (m.record["name"], m.record["level"].name, m.record["message"], m.record["extra"].get("task_id"))
        ),
        level="DEBUG",
    )
    try:
        process.observe(TaskEvent("t-2", "queued", name="cv2", queue="cpu", at=10.0))
        process.observe(TaskEvent("t-2", "failed", name="cv2", queue="cpu", error="boom {x}", attempts=1, at=11.0))
    finally:
        logger.remove(sink)
        process.shutdown()
    # Straight to loguru (no standard-library record), under the path's own name, the task id in ``extra``;
    # braces in an error are not read as format fields.
    assert seen == [
        ("lama_cleaner.tasks", "DEBUG", "task accepted: inpaint cv2 on queue cpu", "t-2"),
        ("lama_cleaner.tasks", "WARNING", "task failed after 1 attempt(s): boom {x}", "t-2"),
    ]


def test_the_path_is_not_formatted_below_the_process_level(process: MonitorProcess) -> None:
    config = Config()
    config.monitor.task_path_level = "DEBUG"  # the default process level (INFO) hides it
    process.startup(config, "scheduler")
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(m.record["message"]), level="DEBUG")
    try:
        process.observe(TaskEvent("t-3", "queued", name="cv2", queue="cpu", at=10.0))
        process.observe(TaskEvent("t-3", "failed", name="cv2", queue="cpu", error="boom", attempts=1, at=11.0))
    finally:
        logger.remove(sink)
        process.shutdown()
    assert [m for m in seen if "t-3" in m or m.startswith("task ")] == ["task failed after 1 attempt(s): boom"]
