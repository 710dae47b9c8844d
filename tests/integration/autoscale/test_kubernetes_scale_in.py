"""Drain before scale-in on Kubernetes: the autoscaler drains the idle pod's node, waits until it holds
no task, and only then has the provider mark exactly that pod and lower the replicas.

The API server is the HTTP stand-in (it plays the ReplicaSet); the scheduler is an in-memory ``SchedulerHandle``
whose nodes are the stand-in's pods, so the test decides which pod is busy and when a drain
completes, and one shared log records drains and API calls in the order they happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lama_cleaner.plugins.autoscale.autoscaler import Autoscaler
from lama_cleaner.plugins.autoscale.config import AutoscaleConfig, QueuePolicy
from lama_cleaner.plugins.autoscale.providers.base import ProviderContext
from lama_cleaner.plugins.autoscale.providers.kubernetes import KubernetesProvider, KubernetesSettings
from lama_cleaner.plugins.distributed.scheduler.handle import NodeInfo, QueueStats, SchedulerStats
from tests.integration.autoscale.kube_apiserver import FakeApiServer


@dataclass
class PodNodes:
    """Nodes running in the stand-in's pods, as a scheduler would report them."""

    apiserver: FakeApiServer
    states: dict[str, tuple[str, str | None]]

    def stats(self) -> SchedulerStats:
        nodes = []
        for pod in self.apiserver.pods_of("lama-node-gpu"):
            state, task = self.states.get(pod, ("idle", None))
            labels = {"autoscale.provider": "kubernetes", "autoscale.instance": pod}
            nodes.append(
                NodeInfo(f"node-{pod}", pod, state, ("gpu",), (), labels, "cuda", task, None, 0.0, (), 0, False)
            )
        running = sum(1 for state, _ in self.states.values() if state == "busy")
        queues = {"gpu": QueueStats("gpu", queued=0, running=running, oldest_queued_age_s=None, unschedulable=0)}
        return SchedulerStats(0.0, {}, queues, tuple(nodes), ())

    def drain_node(self, node_id: str) -> bool:
        pod = node_id.removeprefix("node-")
        with self.apiserver.lock:
            self.apiserver.requests.append(("DRAIN", node_id, None))
        state, task = self.states.get(pod, ("idle", None))
        self.states[pod] = ("draining", task)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def apiserver():
    server = FakeApiServer(namespace="lama").start()
    server.add_deployment("lama-node-gpu", replicas=0)
    yield server
    server.close()


def test_scale_in_drains_first_and_removes_exactly_the_drained_pod(apiserver):
    clock = Clock()
    config = AutoscaleConfig(
        queues={"gpu": QueuePolicy(min_nodes=0, max_nodes=4, providers=["kubernetes"], up_window_s=0,
                                   up_cooldown_s=0, down_window_s=60, down_cooldown_s=0, max_step_down=1)},
    )  # fmt: skip
    settings = KubernetesSettings(namespace="lama", deployment="lama-node-{queue}", host=apiserver.url)
    provider = KubernetesProvider(settings, ProviderContext(scheduler="tcp://10.0.0.1:5570"))
    view = PodNodes(apiserver, {})
    scaler = Autoscaler(config, {"kubernetes": provider}, view, clock=clock)

    assert scaler.scale("gpu", "=3").started == {"kubernetes": 3}
    pods = apiserver.pods_of("lama-node-gpu")
    busy = [pods[0], pods[2]]
    for pod in busy:
        view.states[pod] = ("busy", f"task-on-{pod}")
    scaler.tick()  # the three pods register: the anonymous launches learn their pod names
    assert sorted(t.instance.instance_id for t in scaler.tracker.live()) == pods

    clock.now = 61.0
    apiserver.requests.clear()
    [outcome] = scaler.tick()
    assert outcome.decision.drain == (f"node-{pods[1]}",)  # the idle one, never a busy one
    assert apiserver.requests[-1] == ("DRAIN", f"node-{pods[1]}", None)
    assert not [r for r in apiserver.requests if r[0] == "PATCH"]  # nothing released before the drain completes

    view.states[pods[1]] = ("draining", "a-last-task")  # the drained node is still finishing a task
    clock.now = 62.0
    scaler.tick()
    assert not [r for r in apiserver.requests if r[0] == "PATCH"]

    view.states[pods[1]] = ("draining", None)  # done: now, and only now, its pod goes
    clock.now = 63.0
    scaler.tick()
    writes = [(m, p.rsplit("/", 1)[-1], b) for m, p, b in apiserver.requests if m in ("PATCH", "DRAIN")]
    assert [w[:2] for w in writes] == [("DRAIN", f"node-{pods[1]}"), ("PATCH", pods[1]), ("PATCH", "scale")]
    assert writes[2][2]["spec"] == {"replicas": 2}
    assert apiserver.pods_of("lama-node-gpu") == busy  # exactly the drained pod was deleted
    assert scaler.counters["instances_released"] == 1
    assert [d["action"] for d in scaler.status()["decisions"]] == ["scale_up", "scale_down"]
