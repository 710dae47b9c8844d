"""The plugin's face: its hooks load beside the distributed plugin, check the section, start the
autoscaler on ``scheduler_started``, answer ``scheduler_call``, feed tracking from ``node_event``,
and stop on ``shutdown``/``scheduler_stopped``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lama_cleaner.config import Config, ConfigError
from lama_cleaner.plugins.autoscale import plugin
from lama_cleaner.plugins.autoscale.config import QueuePolicy
from lama_cleaner.plugins.autoscale.runtime import SCALE_CALL, STATUS_CALL, node_endpoint
from lama_cleaner.plugins.manager import create_plugin_manager
from tests.unit.autoscale.fake_scheduler import FakeScheduler
from tests.unit.autoscale.snapshots import NodeInfo


@dataclass(frozen=True)
class NodeEvent:
    kind: str
    node: NodeInfo
    time: float = 0.0


@dataclass(frozen=True)
class LeftInfo(NodeInfo):
    left: bool = False


def config_with(queue: str = "cpu", providers: tuple[str, ...] = ("local",)) -> Config:
    config = Config()
    config.plugins = ["distributed", "autoscale"]
    config.autoscale.interval_s = 3600  # the first evaluation runs at once, the next not during the test
    config.autoscale.queues = {queue: QueuePolicy(max_nodes=1, providers=list(providers))}
    return config


@pytest.fixture
def pm():
    made = create_plugin_manager(["distributed", "autoscale"])
    yield made
    plugin.shutdown()


def test_loads_beside_the_distributed_plugin_with_its_section_command_and_hooks(pm):
    assert "autoscale" in Config().sections
    assert any(c.name == "scale" for result in pm.hook.register_commands() for c in result)
    names = {cls.name for result in pm.hook.register_scaling_providers(config=None) for cls in result}
    assert names == {"local", "kubernetes", "aws-lambda", "aliyun-fc"}


@pytest.mark.parametrize(
    ("queue", "providers", "message"),
    [
        ("cpu", ("nomad",), "autoscale.queues.cpu.providers: unknown provider 'nomad'"),
        ("tpu", ("local",), "autoscale.queues.tpu: no such queue"),
    ],
)
def test_configure_refuses_what_no_plugin_or_queue_provides(pm, queue, providers, message):
    with pytest.raises(ConfigError, match=message):
        pm.hook.configure(config=config_with(queue, providers), args=None)


def test_the_autoscaler_follows_the_scheduler_and_answers_calls(pm):
    config, scheduler = config_with(), FakeScheduler(("gpu", "cpu"))
    scheduler.control_endpoint = "tcp://0.0.0.0:5570"
    pm.hook.scheduler_started(scheduler=scheduler, config=config)
    runtime = plugin._registry().for_handle(scheduler)
    assert runtime is not None and runtime.job.running
    assert node_endpoint(scheduler, config) == "tcp://127.0.0.1:5570"

    status = plugin.scheduler_call(STATUS_CALL, {})
    assert set(status["queues"]) == {"cpu"} and "local" in status["providers"]
    refused = plugin.scheduler_call(SCALE_CALL, {"queue": "gpu", "nodes": "+1"})
    assert refused["error"]["status"] == 404 and refused["error"]["code"] == "unknown_queue"
    bad = plugin.scheduler_call(SCALE_CALL, {"queue": "cpu", "nodes": "lots"})
    assert bad["error"]["status"] == 400
    assert plugin.scheduler_call("monitor.something", {}) is None  # not ours: another plugin may answer

    labels = {"autoscale.provider": "local", "autoscale.instance": "local-1"}
    node = LeftInfo("n1", state="idle", queues=("cpu",), labels=labels)
    plugin.node_event(NodeEvent("joined", node))
    [tracked] = runtime.autoscaler.tracker.live()
    assert tracked.node_id == "n1" and tracked.status == "registered"
    plugin.node_event(NodeEvent("offline", LeftInfo("n1", state="offline", labels=labels, left=True)))
    assert tracked.goodbye and tracked.gone_at is not None  # offline after a BYE: it left, it did not vanish

    pm.hook.scheduler_stopped(scheduler=scheduler, config=config)
    assert plugin._registry().first() is None
    plugin.shutdown()  # waits for the providers to close
    assert runtime.stopped and not runtime.job.running
    assert plugin.scheduler_call(STATUS_CALL, {})["error"]["code"] == "autoscale_not_running"
