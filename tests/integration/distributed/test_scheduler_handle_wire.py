"""``executor.scheduler_handle`` in both modes: the embedded scheduler's own handle, and a remote one
over the web server's connection to a standalone ``lama-cleaner scheduler`` (STATS, DRAIN, CALL).
Both give the same snapshot shape; a drain and a plugin call work over the wire."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from lama_cleaner.config import Config
from lama_cleaner.events import EventSink
from lama_cleaner.plugins.distributed.scheduler.handle import (
    NodeInfo,
    QueueStats,
    SchedulerCallError,
    SchedulerStats,
    TaskSample,
)
from lama_cleaner.tasks import TaskRequest
from tests.support.distributed_config import FAKE_PLUGIN, FAST
from tests.support.waiting import wait_for

from .conftest import Proc, free_port_block, mask_png, png, start_node, task_form, write_config

RECORDER = "tests.support.scheduler_hooks_recorder"


def _executor(config: Config):
    from lama_cleaner.plugins.distributed.producer.executor import DistributedExecutor
    from lama_cleaner.plugins.manager import create_plugin_manager

    pm = create_plugin_manager(config.plugins)
    return DistributedExecutor(config, EventSink(pm), pm, start_local_nodes=False)


def _config(tmp_path: Path, **dist: Any) -> Config:
    config = Config(model="cv2", device="cpu", plugins=["distributed", FAKE_PLUGIN, RECORDER])
    d = config.distributed
    d.scheduler_bind = "tcp://127.0.0.1:0"
    d.data_dir = str(tmp_path / "journal")
    d.local_nodes = 0
    d.request_timeout_s = 60
    d.heartbeat_interval_s = FAST["distributed"]["heartbeat_interval_s"]
    for key, value in dist.items():
        setattr(d, key, value)
    return config


def _run_one(executor: Any) -> None:
    form = task_form("0")
    out = executor.run(TaskRequest(kind="inpaint", name="sleep", form=form, files={"image": png(), "mask": mask_png()}))
    assert out.body


def _idle_node(handle: Any) -> NodeInfo:
    return wait_for(lambda: next((n for n in handle.stats().nodes if n.state == "idle"), None), 60, "an idle node")


def _shape(value: Any) -> Any:
    """The structure of a snapshot: field names and value types, not values."""
    if dataclasses.is_dataclass(value):
        return {f.name: _shape(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (dict, tuple)):
        items = value.values() if isinstance(value, dict) else value
        return {type(value).__name__: sorted({repr(_shape(v)) for v in items})}
    return type(value).__name__


def _check_shapes(stats: SchedulerStats) -> None:
    assert isinstance(stats, SchedulerStats)
    assert all(isinstance(q, QueueStats) for q in stats.queues.values())
    assert all(isinstance(n, NodeInfo) and isinstance(n.queues, tuple) for n in stats.nodes)
    assert all(isinstance(s, TaskSample) for s in stats.recent)


@pytest.fixture
def standalone(tmp_path: Path, procs):
    """A ``lama-cleaner scheduler`` subprocess with the recorder plugin, one node, and a web-side executor."""
    port = free_port_block(3)
    endpoint = f"tcp://127.0.0.1:{port}"
    cfg = write_config(tmp_path, FAST)
    sched = Proc(
        ["scheduler", "--scheduler-bind", endpoint, "--data-dir", str(tmp_path / "standalone"),
         "--config", str(cfg), "--plugins", f"{FAKE_PLUGIN},{RECORDER}"]
    )  # fmt: skip
    procs.append(sched)
    start_node(procs, endpoint, cfg, "--name", "remote-node", "--models", "sleep")
    executor = _executor(_config(tmp_path / "web", scheduler=endpoint))
    yield executor, sched
    executor.close()


def test_embedded_and_standalone_give_the_same_stats_shape(tmp_path: Path, procs, tmp_config, standalone):
    remote_executor, _sched = standalone
    embedded = _executor(_config(tmp_path / "embedded"))
    try:
        start_node(procs, embedded.endpoint, tmp_config, "--name", "local-node", "--models", "sleep")
        local, remote = embedded.scheduler_handle, remote_executor.scheduler_handle
        assert local.local is True and remote.local is False
        # where nodes connect: what this node was given, and what the web server itself reaches
        assert local.control_endpoint == embedded.endpoint and remote.control_endpoint == remote_executor.endpoint
        _idle_node(local)
        _idle_node(remote)
        _run_one(embedded)
        _run_one(remote_executor)
        wait_for(lambda: remote.stats().recent and local.stats().recent, 10, "a finished sample on both sides")
        a, b = local.stats(), remote.stats()
        _check_shapes(a)
        _check_shapes(b)
        assert _shape(a) == _shape(b)
        assert set(a.counters) == set(b.counters)
        promised = {"submitted", "dispatched", "completed", "failed", "cancelled", "retried", "requeued",
                    "duplicates_discarded", "heartbeats_missed", "nodes_lost", "rejected_messages"}  # fmt: skip
        assert promised <= set(b.counters)
        assert b.counters["completed"] == 1 and b.nodes[0].name == "remote-node" and b.nodes[0].tasks_done == 1
        assert b.queues["cpu"].queued == 0 and b.queues["cpu"].oldest_queued_age_s is None
        assert b.recent[0].status == "completed" and b.recent[0].node_id == b.nodes[0].node_id
    finally:
        embedded.close()


def test_drain_and_plugin_calls_work_over_the_wire(standalone):
    executor, sched = standalone
    handle = executor.scheduler_handle
    node = _idle_node(handle)
    assert handle.drain_node("no-such-node") is False
    assert handle.drain_node(node.node_id) is True
    wait_for(lambda: handle.stats().nodes[0].state == "draining", 10, "the node draining")

    answer = handle.call("test.echo", {"x": [1, 2]})
    assert answer["echo"] == {"x": [1, 2]}
    assert answer["pid"] == sched.pid != os.getpid(), "answered in the scheduler's process"
    assert answer["thread"].startswith("scheduler-call"), "off the scheduler's loop thread"
    with pytest.raises(LookupError, match="test.nobody"):
        handle.call("test.nobody", {})
    with pytest.raises(SchedulerCallError, match="ValueError: boom on purpose"):
        handle.call("test.boom", {})
    assert handle.call("test.echo", {})["echo"] == {}, "a raising plugin broke nothing"


def test_the_embedded_handle_calls_plugins_and_drains_in_process(tmp_path: Path, procs, tmp_config):
    executor = _executor(_config(tmp_path))
    try:
        handle = executor.scheduler_handle
        assert handle.call("test.echo", {"a": 1})["pid"] == os.getpid()
        with pytest.raises(LookupError):
            handle.call("test.nobody", {})
        with pytest.raises(SchedulerCallError, match="boom on purpose"):
            handle.call("test.boom", {})
        start_node(procs, executor.endpoint, tmp_config, "--models", "sleep")
        node = _idle_node(handle)
        assert handle.drain_node("no-such-node") is False
        assert handle.drain_node(node.node_id) is True
        assert handle.stats().nodes[0].state == "draining"
    finally:
        executor.close()
