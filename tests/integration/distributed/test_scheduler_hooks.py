"""The distributed plugin's hooks and the scheduler handle, against a real scheduler and real node
subprocesses: embedded in a web process's executor (in this process) and as ``lama-cleaner scheduler``.

Each hook fires with the arguments ``docs/plugins.md`` promises; ``task_event`` reaches every
observer exactly once per event when the scheduler is embedded; a slow ``node_event`` observer
delays no dispatch and a raising one is logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lama_cleaner.config import Config
from lama_cleaner.events import EventSink
from lama_cleaner.tasks import TaskRequest
from tests.support import scheduler_hooks_recorder as recorder
from tests.support.distributed_config import FAKE_PLUGIN, FAST
from tests.support.waiting import wait_for

from .conftest import Proc, free_port_block, mask_png, png, start_node, task_form, write_config

RECORDER = "tests.support.scheduler_hooks_recorder"


@pytest.fixture(autouse=True)
def _fresh_recorder():
    recorder.reset()
    yield
    recorder.release()


def _config(tmp_path: Path, **dist: Any) -> Config:
    config = Config(model="cv2", device="cpu", plugins=["distributed", FAKE_PLUGIN, RECORDER])
    d = config.distributed
    d.scheduler_bind = "tcp://127.0.0.1:0"
    d.data_dir = str(tmp_path / "journal")
    d.local_nodes = 0
    d.heartbeat_interval_s = FAST["distributed"]["heartbeat_interval_s"]
    d.request_timeout_s = 60
    for key, value in dist.items():
        setattr(d, key, value)
    return config


def _embedded(config: Config):
    from lama_cleaner.plugins.distributed.producer.executor import DistributedExecutor
    from lama_cleaner.plugins.manager import create_plugin_manager

    pm = create_plugin_manager(config.plugins)
    events = EventSink(pm)
    return DistributedExecutor(config, events, pm, start_local_nodes=False), events


def _request(model: str = "sleep", prompt: str = "0") -> TaskRequest:
    return TaskRequest(kind="inpaint", name=model, form=task_form(prompt), files={"image": png(), "mask": mask_png()})


def _node_kinds(name: str) -> list[str]:
    return [e.kind for e in recorder.named("node_event") if e.node.name == name]


def _node(handle: Any, name: str) -> Any:
    return next((n for n in handle.stats().nodes if n.name == name), None)


def test_embedded_scheduler_fires_each_hook_with_its_arguments(tmp_path: Path, procs, tmp_config):
    config = _config(tmp_path)
    executor, events = _embedded(config)
    closed = False
    try:
        handle = executor.scheduler_handle
        assert handle is executor.scheduler.handle and handle.local is True
        [(started, started_config)] = recorder.named("scheduler_started")
        assert started is handle and started_config is config

        node = start_node(procs, executor.endpoint, tmp_config, "--name", "n1", "--models", "sleep,steps")
        wait_for(lambda: _node_kinds("n1")[:2] == ["joined", "idle"], 60, "n1 joined, then idle")
        joined = recorder.named("node_event")[0]
        assert joined.node.device == "cpu" and "cpu" in joined.node.queues and joined.node.left is False
        assert joined.node.models == ("sleep", "steps") and joined.node_id == joined.node.node_id
        assert joined.time <= time.time()

        out = executor.run(_request("steps", "steps=3 1"))
        assert out.body
        wait_for(lambda: _node_kinds("n1")[2:4] == ["busy", "idle"], 30, "n1 busy, then idle again")
        events.flush()
        statuses = [(e.task_id, e.status, e.step) for e in recorder.named("task_event")]
        task_id = statuses[0][0]
        assert [s for t, s, _ in statuses if t == task_id][:2] == ["queued", "processing"]
        assert statuses[-1][:2] == (task_id, "completed")
        # exactly once per event: nothing forwarded a second time by the web side's connection
        assert all(n == 1 for n in Counter(statuses).values()), statuses
        assert [s for _, _, s in statuses if s is not None] == [0, 1, 2]

        stats = handle.stats()
        [sample] = [s for s in stats.recent if s.task_id == task_id]
        assert sample.status == "completed" and sample.run_s is not None and sample.wait_s is not None
        assert sample.node_id == _node(handle, "n1").node_id and sample.attempts == 1 and sample.error is None
        assert stats.counters["completed"] == 1 and stats.counters["dispatched"] == 1
        info = _node(handle, "n1")
        assert info.tasks_done == 1 and info.state == "idle" and info.heartbeat_age_s < 5

        # A task no online node can run: reported once, counted in its queue meanwhile.
        submitted = executor.submit(_request("gpu_sleep"))
        wait_for(lambda: recorder.named("task_unschedulable"), 10, "task_unschedulable")
        [report] = recorder.named("task_unschedulable")
        assert report["task_id"] == submitted.id and report["queue"] == "gpu" and report["kind"] == "inpaint"
        assert report["name"] == "gpu_sleep" and "no online node can run" in report["reason"]
        assert handle.stats().queues["gpu"].unschedulable == 1
        assert handle.stats().queues["gpu"].oldest_queued_age_s >= 0
        checks = executor.scheduler._next_unschedulable_check
        wait_for(lambda: executor.scheduler._next_unschedulable_check > checks, 10, "another unschedulable check")
        assert len(recorder.named("task_unschedulable")) == 1, "reported once per task"

        # Leaving on purpose (BYE) is "left"; vanishing (SIGKILL) is "offline".
        other = start_node(procs, executor.endpoint, tmp_config, "--name", "n2", "--models", "sleep")
        wait_for(lambda: "idle" in _node_kinds("n2"), 60, "n2 idle")
        node.stop()
        wait_for(lambda: "left" in _node_kinds("n1"), 30, "n1 left")
        assert [e for e in recorder.named("node_event") if e.kind == "left"][0].node.left is True
        other.kill()
        wait_for(lambda: "offline" in _node_kinds("n2"), 30, "n2 offline")
        assert _node(handle, "n2").left is False and _node(handle, "n1").left is True
        counters = handle.stats().counters
        assert counters["nodes_lost"] == 1 and counters["heartbeats_missed"] >= 1

        scheduler = executor.scheduler
        executor.close()
        closed = True
        [(stopped, stopped_config)] = recorder.named("scheduler_stopped")
        assert stopped is handle and stopped_config is config and not scheduler.running
        assert handle.stats().counters["completed"] == 1, "the last snapshot stays readable"
    finally:
        if not closed:
            executor.close()


def test_a_slow_node_observer_delays_no_dispatch_and_a_raising_one_is_logged(tmp_path: Path, procs, tmp_config, caplog):
    caplog.set_level(logging.ERROR, logger="lama_cleaner.events")
    config = _config(tmp_path)
    executor, _events = _embedded(config)
    try:
        recorder.hold.set()  # every node_event call now waits for the test
        start_node(procs, executor.endpoint, tmp_config, "--name", "raise-me", "--models", "sleep")
        handle = executor.scheduler_handle
        wait_for(lambda: (n := _node(handle, "raise-me")) is not None and n.state == "idle", 60, "node idle")
        started = time.monotonic()
        for _ in range(3):
            assert executor.run(_request()).body
        assert time.monotonic() - started < 30
        assert recorder.entered == ["joined"], "the observer is still held in its first call"
        recorder.release()
        wait_for(
            lambda: "node_event observer tests.support.scheduler_hooks_recorder failed" in caplog.text,
            10,
            "the raising observer's error in the log",
        )
        assert "observer refuses joined" in caplog.text
        assert executor.run(_request()).body, "the scheduler still works after the observer raised"
    finally:
        recorder.release()
        executor.close()


def _hook_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_standalone_scheduler_fires_the_hooks_in_its_own_process(tmp_path: Path, procs):
    from lama_cleaner.plugins.distributed.producer.executor import DistributedExecutor
    from lama_cleaner.plugins.manager import create_plugin_manager

    log_path = tmp_path / "hooks.jsonl"
    port = free_port_block(3)
    endpoint = f"tcp://127.0.0.1:{port}"
    cfg = write_config(tmp_path, FAST)
    scheduler = Proc(
        ["scheduler", "--scheduler-bind", endpoint, "--data-dir", str(tmp_path / "journal"),
         "--config", str(cfg), "--plugins", f"{FAKE_PLUGIN},{RECORDER}"],
        env={"LAMA_TEST_HOOK_LOG": str(log_path)},
    )  # fmt: skip
    procs.append(scheduler)
    wait_for(lambda: any(x["hook"] == "scheduler_started" for x in _hook_lines(log_path)), 60, "scheduler_started")
    [started] = [x for x in _hook_lines(log_path) if x["hook"] == "scheduler_started"]
    assert started["local"] is True and started["stats"]["queues"] == ["cpu", "gpu"]
    assert {"submitted", "retried", "requeued", "nodes_lost"} <= set(started["stats"]["counters"])

    start_node(procs, endpoint, cfg, "--name", "s1", "--models", "sleep")
    config = Config(model="cv2", device="cpu", plugins=["distributed", FAKE_PLUGIN])
    config.distributed.scheduler = endpoint
    config.distributed.request_timeout_s = 60
    config.distributed.heartbeat_interval_s = FAST["distributed"]["heartbeat_interval_s"]
    executor = DistributedExecutor(config, _Recorded(), create_plugin_manager(config.plugins), start_local_nodes=False)
    try:
        wait_for(lambda: any(x.get("kind") == "idle" for x in _hook_lines(log_path)), 60, "the node idle")
        task_id = executor.submit(_request()).id
        wait_for(
            lambda: any(x.get("task_id") == task_id and x.get("status") == "completed" for x in _hook_lines(log_path)),
            60,
            "the completed task_event in the scheduler's process",
        )
    finally:
        executor.close()
    lines = _hook_lines(log_path)
    statuses = [x["status"] for x in lines if x["hook"] == "task_event" and x["task_id"] == task_id]
    assert statuses == ["queued", "processing", "completed"]
    kinds = [x["kind"] for x in lines if x["hook"] == "node_event"]
    assert kinds[:4] == ["joined", "idle", "busy", "idle"]
    node = [x["node"] for x in lines if x["hook"] == "node_event"][0]
    assert node["name"] == "s1" and node["device"] == "cpu" and node["models"] == ["sleep"]
    assert scheduler.stop() == 0
    assert [x["local"] for x in _hook_lines(log_path) if x["hook"] == "scheduler_stopped"] == [True]


class _Recorded:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)
