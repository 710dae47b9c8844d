"""autoscaler.py: one evaluation observes, follows instances, releases drained ones, decides and acts."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.autoscale.autoscaler import Autoscaler, UnknownQueue
from lama_cleaner.plugins.autoscale.config import AutoscaleConfig, QueuePolicy
from lama_cleaner.plugins.autoscale.providers.base import ProviderThrottled
from tests.unit.autoscale.fake_scheduler import FakeScheduler
from tests.unit.autoscale.stub_provider import StubProvider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


POLICY = dict(min_nodes=0, max_nodes=4, up_window_s=0, up_cooldown_s=0, down_window_s=60, down_cooldown_s=30)


@pytest.fixture
def setup():
    cloud, local = StubProvider("cloud", limit=8), StubProvider("local", limit=2)
    config = AutoscaleConfig(
        interval_s=5,
        queues={"gpu": QueuePolicy(providers=["cloud", "local"], **POLICY)},
        register_timeout_s=120,
        retry_min_s=30,
        retry_max_s=300,
    )
    sched, clock = FakeScheduler(), Clock()
    seen: list = []
    scaler = Autoscaler(config, {"cloud": cloud, "local": local}, sched, clock=clock,
                        on_decision=lambda d, o: seen.append((d, o)), on_provider_event=seen.append)  # fmt: skip
    return scaler, sched, clock, cloud, local, seen


def test_backlog_falls_back_to_the_next_provider_and_capacity_returns_after_recovery(setup):
    scaler, sched, clock, cloud, local, seen = setup
    cloud.fail_next = [ProviderThrottled("TooManyRequestsException: Rate Exceeded")]
    sched.backlog("gpu", 6, unschedulable=6)
    [outcome] = scaler.tick()
    assert outcome.decision.reason == "scale_up queue=gpu +2: 6 queued > 0, no node serves the queue"
    assert outcome.started == {"local": 2} and outcome.shortfall == 0
    assert outcome.errors == ["cloud: throttled: TooManyRequestsException: Rate Exceeded"]
    status = scaler.status()
    assert status["providers"]["cloud"]["health"]["status"] == "degraded"
    assert [e["kind"] for e in status["events"]] == ["degraded"]
    assert status["decisions"][0]["started"] == {"local": 2}
    assert status["queues"]["gpu"]["pending"] == 2

    for inst in local.running.values():
        sched.register(inst, state="busy")
    sched.backlog("gpu", 12)
    clock.advance(10)
    assert scaler.tick() == []  # the cloud is still backing off and local is full: nothing to ask
    assert scaler.status()["queues"]["gpu"]["held"] == "at providers have room for 0"
    clock.advance(30)
    outcomes = scaler.tick()
    assert [o.started for o in outcomes] == [{"cloud": 1}]  # retry time passed: the cloud first again
    assert [e.kind for e in scaler.events][-1] == "recovered"
    assert scaler.counters["instances_started"] >= 3


def test_scale_in_drains_the_idle_node_then_releases_exactly_it(setup):
    scaler, sched, clock, cloud, local, seen = setup
    sched.backlog("gpu", 8)
    scaler.tick()
    a, b = sorted(cloud.running.values(), key=lambda i: i.instance_id)
    na, nb = sched.register(a), sched.register(b, state="busy")
    sched.set_state(nb, "busy", current_task="t1", progress=0.5)
    sched.backlog("gpu", 0)
    scaler.tick()
    clock.advance(61)
    [outcome] = scaler.tick()
    assert outcome.decision.drain == (na,) and outcome.drained == [na] and sched.drains == [na]
    assert cloud.calls[-1][0] != "release"  # nothing released before the drain shows
    clock.advance(5)
    scaler.tick()  # the node is draining and holds no task: release exactly its instance
    assert ("release", [a.instance_id]) in cloud.calls
    assert b.instance_id in cloud.running and a.instance_id not in cloud.running
    assert scaler.counters["instances_released"] == 1


def test_a_busy_drained_node_is_released_only_after_its_task(setup):
    scaler, sched, clock, cloud, local, seen = setup
    sched.backlog("gpu", 4)
    scaler.tick()
    [inst] = cloud.running.values()
    node = sched.register(inst, state="busy")
    sched.set_state(node, "busy", current_task="t1")
    outcome = scaler.scale("gpu", "=0")
    assert outcome.drained == [node]
    sched.set_state(node, "draining", current_task="t1")
    clock.advance(5)
    scaler.tick()
    assert not any(call == "release" for call, _ in cloud.calls)
    sched.set_state(node, "draining", current_task=None)
    clock.advance(5)
    scaler.tick()
    assert ("release", [inst.instance_id]) in cloud.calls


def test_an_instance_that_never_registers_is_forgotten_and_degrades_its_provider(setup):
    scaler, sched, clock, cloud, local, seen = setup
    sched.backlog("gpu", 1, unschedulable=1)
    scaler.tick()
    [inst] = cloud.running.values()
    clock.advance(119)
    scaler.tick()
    assert scaler.health.usable("cloud", clock())
    clock.advance(1)
    scaler.tick()
    assert ("forget", [inst.instance_id]) in cloud.calls
    assert scaler.counters["abnormal_instances"] == 1
    assert not scaler.health.usable("cloud", clock())
    assert scaler.status()["instances"]["ended"][0]["end"] == "never_registered"


def test_a_vanished_node_raises_the_error_count_without_degrading(setup):
    scaler, sched, clock, cloud, local, seen = setup
    sched.backlog("gpu", 1, unschedulable=1)
    scaler.tick()
    [inst] = cloud.running.values()
    node = sched.register(inst)
    scaler.tick()
    sched.set_state(node, "offline")
    clock.advance(5)
    scaler.tick()
    clock.advance(10)
    scaler.tick()
    assert scaler.health.record("cloud").errors == 1 and scaler.health.usable("cloud", clock())
    assert ("forget", [inst.instance_id]) in cloud.calls


def test_an_idle_exit_with_goodbye_is_normal(setup):
    scaler, sched, clock, cloud, local, seen = setup
    sched.backlog("gpu", 1, unschedulable=1)
    scaler.tick()
    [inst] = cloud.running.values()
    node = sched.register(inst)
    scaler.node_joined(sched.nodes[node])
    scaler.node_gone(node, goodbye=True)
    sched.leave(node)
    sched.backlog("gpu", 0)
    clock.advance(5)
    scaler.tick()
    assert scaler.counters["abnormal_instances"] == 0 and ("forget", [inst.instance_id]) in cloud.calls


def test_manual_requests_and_their_errors(setup):
    scaler, sched, clock, cloud, local, seen = setup
    outcome = scaler.scale("gpu", "+3")
    assert outcome.decision.source == "manual" and outcome.started == {"cloud": 3}
    assert seen[-1][1] is outcome
    assert scaler.counters["manual"] == 1
    with pytest.raises(UnknownQueue):
        scaler.scale("cpu", "+1")
    with pytest.raises(ValueError, match="expected =N"):
        scaler.scale("gpu", "lots")


def test_a_failing_evaluation_is_counted_and_the_next_one_works(setup):
    scaler, sched, clock, cloud, local, seen = setup
    sched.stats_error = ConnectionError("scheduler unreachable")
    assert scaler.safe_tick() == []
    assert scaler.counters["evaluation_errors"] == 1
    assert scaler.status()["last_error"] == "ConnectionError: scheduler unreachable"
    sched.stats_error = None
    sched.backlog("gpu", 1, unschedulable=1)
    assert len(scaler.safe_tick()) == 1
