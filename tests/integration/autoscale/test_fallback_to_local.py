"""Fallback through the real SDKs: a throttled cloud provider hands capacity to real ``local`` nodes,
gets it back once it recovers, and an instance that never registers is detected.

The autoscaler runs on a test clock (so backoffs and timeouts pass on demand) against a real
scheduler; the local nodes are real processes, the Lambda and Function Compute APIs local HTTP
stand-ins answered through boto3 and the FC 3.0 SDK.
"""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.autoscale.autoscaler import Autoscaler
from lama_cleaner.plugins.autoscale.config import AutoscaleConfig, QueuePolicy
from lama_cleaner.plugins.autoscale.providers.base import ProviderContext
from lama_cleaner.plugins.autoscale.providers.builtin import builtin_provider_classes
from lama_cleaner.plugins.autoscale.providers.registry import build_providers
from tests.integration.autoscale.cloud_endpoints import CloudEndpoints
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

START_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cloud(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ALIBABA_CLOUD_ACCESS_KEY_ID",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):  # fmt: skip
        monkeypatch.setenv(key, "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    endpoints = CloudEndpoints().start()
    yield endpoints
    endpoints.close()


def make_autoscaler(scheduler, node_config_file, cloud, clock, first: str) -> Autoscaler:
    config = AutoscaleConfig(
        interval_s=1,
        queues={
            "cpu": QueuePolicy(
                min_nodes=0,
                max_nodes=4,
                providers=[first, "local"],
                up_window_s=0,
                up_cooldown_s=0,
                down_window_s=600,
                down_cooldown_s=0,
            )
        },  # fmt: skip
        providers={
            "local": {"max_nodes": 1, "device": "cpu", "stop_grace_s": 2},
            "aws-lambda": {
                "endpoint_url": cloud.url,
                "region": "eu-west-1",
                "function": "lama-{queue}",
                "max_concurrency": 2,
            },
            "aliyun-fc": {"endpoint": cloud.host, "protocol": "http", "function": "lama-{queue}", "max_concurrency": 2},
        },  # fmt: skip
        register_timeout_s=300,
        retry_min_s=30,
        retry_max_s=300,
    )
    context = ProviderContext(scheduler=scheduler.control_endpoint, config_path=str(node_config_file))
    providers = build_providers(config, builtin_provider_classes(), context)
    return Autoscaler(config, providers, scheduler.handle, clock=clock)


def local_nodes(scaler: Autoscaler) -> list:
    return [n for n in scaler.scheduler.stats().nodes if n.labels.get("autoscale.provider") == "local"]


@pytest.mark.parametrize(("first", "platform", "outage"), [
    ("aws-lambda", "lambda", (429, "TooManyRequestsException", "Rate Exceeded.")),
    ("aliyun-fc", "fc", (503, "ResourceThrottled", "no GPU machines")),
])  # fmt: skip
def test_a_throttled_cloud_falls_back_to_local_and_gets_capacity_back_when_it_recovers(
    scheduler, node_config_file, cloud, first, platform, outage
):
    clock = Clock()
    scaler = make_autoscaler(scheduler, node_config_file, cloud, clock, first)
    try:
        cloud.outage(platform, *outage)
        outcome = scaler.scale("cpu", "+1")
        assert outcome.started == {"local": 1}
        assert outcome.errors and outcome.errors[0].startswith(f"{first}: throttled: ")
        [event] = [e for e in scaler.events if e.provider == first]
        assert event.kind == "degraded" and event.retry_at == 30.0

        # the local node is real: it starts, registers with its labels, and the tracker matches it
        wait_for(lambda: scaler.tick() is not None and local_nodes(scaler), START_S, "local node registered")
        scaler.tick()
        [tracked] = [t for t in scaler.tracker.live() if t.instance.provider == "local"]
        assert tracked.status == "registered"

        # still backing off: the next request neither asks the cloud nor finds room locally
        clock.now = 10.0
        outcome = scaler.scale("cpu", "+1")
        assert outcome.decision.count == 0 and "providers have room for 0" in outcome.decision.reason
        assert len([i for i in cloud.invocations if i.platform == platform]) == 1

        # the platform recovers; after the retry time new capacity goes back to it
        cloud.restore(platform)
        clock.now = 31.0
        outcome = scaler.scale("cpu", "+1")
        assert outcome.started == {first: 1} and outcome.errors == []
        assert [e.kind for e in scaler.events if e.provider == first] == ["degraded", "recovered"]
        [accepted] = cloud.accepted(platform)
        assert accepted.payload["scheduler"] == scheduler.control_endpoint
        assert accepted.payload["queues"] == ["cpu"]

        # nothing runs the shipped handler here, so that instance never registers: detected
        clock.now = 31.0 + 300.0
        scaler.tick()
        ended = scaler.status()["instances"]["ended"]
        assert [(e["provider"], e["end"]) for e in ended] == [(first, "never_registered")]
        assert scaler.health.record(first).status == "degraded"
        assert scaler.status()["providers"][first]["state"]["live"] == []

        # scale in: the local node is drained, leaves by itself, and is released
        outcome = scaler.scale("cpu", "=0")
        assert outcome.drained == [local_nodes(scaler)[0].node_id]
        local = scaler.providers["local"]
        wait_for(lambda: scaler.tick() is not None and local.capacity("cpu").in_use == 0 and
                 scaler.counters["instances_released"] == 1, 30, "drained local node released")  # fmt: skip
        assert local.state()["exited"][0]["code"] == 0
    finally:
        scaler.close()
