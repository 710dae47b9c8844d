"""tracking.py: launched instances followed until they register, leave, vanish or never come."""

from __future__ import annotations

from lama_cleaner.plugins.autoscale.providers.base import LaunchedInstance
from lama_cleaner.plugins.autoscale.tracking import ENDED, LEAVING, PENDING, REGISTERED, InstanceTracker
from tests.unit.autoscale.snapshots import NodeInfo


def node(node_id: str, instance: str | None, provider: str = "cloud", state: str = "idle", **kw) -> NodeInfo:
    labels = {"autoscale.provider": provider}
    if instance:
        labels["autoscale.instance"] = instance
    return NodeInfo(node_id, state=state, labels=labels, **kw)


def launch(tracker: InstanceTracker, *ids: str | None, provider: str = "cloud", now: float = 0.0, queue="gpu"):
    return tracker.launched([LaunchedInstance(provider, queue, i) for i in ids], now)


def test_an_instance_is_pending_until_its_node_registers():
    tracker = InstanceTracker(register_timeout_s=60)
    launch(tracker, "i-1", "i-2")
    assert tracker.pending() == {"gpu": 2}
    [event] = tracker.observe([node("n1", "i-1")], 5.0)
    assert (event.kind, event.key, event.node_id, event.abnormal) == ("registered", "i-1", "n1", False)
    assert tracker.pending() == {"gpu": 1}
    assert tracker.by_node("n1").status == REGISTERED
    assert tracker.observe([node("n1", "i-1")], 10.0) == []  # nothing new


def test_an_instance_that_never_registers_is_abnormal_after_the_timeout():
    tracker = InstanceTracker(register_timeout_s=60)
    launch(tracker, "i-1", provider="lambda")
    assert tracker.observe([], 59.0) == []
    [event] = tracker.observe([], 60.0)
    assert (event.kind, event.provider, event.abnormal) == ("never_registered", "lambda", True)
    assert event.reason == "not registered 60 s after launch"
    assert tracker.abnormal == {"lambda": 1} and tracker.pending() == {}
    assert tracker.ended()[0].status == ENDED


def test_a_node_that_says_goodbye_ends_normally():
    tracker = InstanceTracker(register_timeout_s=60)
    launch(tracker, "i-1")
    tracker.observe([node("n1", "i-1")], 1.0)
    tracker.node_gone("n1", goodbye=True, now=30.0)  # it idled out and said BYE
    [event] = tracker.observe([node("n1", "i-1", state="offline")], 31.0)
    assert (event.kind, event.abnormal) == ("left", False)
    assert tracker.abnormal == {}


def test_a_node_that_vanishes_without_goodbye_is_abnormal_after_the_grace():
    tracker = InstanceTracker(register_timeout_s=60, goodbye_grace_s=10)
    launch(tracker, "i-1")
    tracker.observe([node("n1", "i-1", state="busy", current_task="t1")], 1.0)
    assert tracker.observe([node("n1", "i-1", state="offline")], 20.0) == []  # grace for a late goodbye
    [event] = tracker.observe([], 30.0)  # then forgotten by the scheduler, still no goodbye
    assert (event.kind, event.node_id, event.abnormal) == ("vanished", "n1", True)
    assert event.reason == "node n1 went away without goodbye"
    assert tracker.abnormal == {"cloud": 1}


def test_a_drained_node_is_releasable_once_it_holds_no_task_or_is_gone():
    tracker = InstanceTracker(register_timeout_s=60)
    launch(tracker, "i-1", "i-2", "i-3")
    nodes = [node("n1", "i-1"), node("n2", "i-2", state="busy", current_task="t"), node("n3", "i-3")]
    tracker.observe(nodes, 1.0)
    tracker.drain_requested(["n1", "n2"], 2.0)
    assert tracker.leaving_nodes() == {"n1", "n2"}
    assert tracker.releasable(nodes) == []  # n1 not yet draining in the snapshot, n2 busy
    nodes = [
        node("n1", "i-1", state="draining"),
        node("n2", "i-2", state="draining", current_task="t"),
        node("n3", "i-3"),
    ]
    assert [t.key for t in tracker.releasable(nodes)] == ["i-1"]
    assert tracker.observe(nodes, 3.0) == []  # leaving nodes are not "vanished" while draining
    tracker.released(["i-1"], 4.0)
    assert [t.key for t in tracker.releasable([node("n3", "i-3")])] == ["i-2"]  # n2 left: release it too
    assert tracker.by_node("n1") is None and tracker.ended()[0].end == "released"


def test_platform_named_launches_match_the_first_unknown_node_and_learn_its_name():
    tracker = InstanceTracker(register_timeout_s=60)
    launch(tracker, None, None, provider="kubernetes", now=0.0)
    launch(tracker, None, provider="kubernetes", now=1.0, queue="cpu")
    events = tracker.observe([node("n1", "pod-a", provider="kubernetes", queues=("cpu",))], 2.0)
    assert [e.kind for e in events] == ["registered"]
    tracked = tracker.by_node("n1")
    assert tracked.instance.queue == "cpu" and tracked.instance.instance_id == "pod-a"
    assert tracker.pending() == {"gpu": 2}


def test_unknown_managed_nodes_are_adopted_and_static_nodes_ignored():
    tracker = InstanceTracker(register_timeout_s=60)
    events = tracker.observe([node("n1", "pod-old", provider="kubernetes", state="draining"), NodeInfo("static")], 0.0)
    assert [(e.kind, e.key) for e in events] == [("adopted", "pod-old")]
    adopted = tracker.by_node("n1")
    assert adopted.status == LEAVING and adopted.instance.detail == {"adopted": True}
    assert tracker.by_node("static") is None


def test_a_restarted_container_with_the_same_instance_id_is_tracked_separately():
    tracker = InstanceTracker(register_timeout_s=60, goodbye_grace_s=0)
    launch(tracker, "pod-a")
    tracker.observe([node("n1", "pod-a")], 1.0)
    events = tracker.observe([node("n1", "pod-a", state="offline"), node("n2", "pod-a")], 2.0)
    assert sorted(e.kind for e in events) == ["adopted", "vanished"]
    assert tracker.by_node("n2").status == REGISTERED and tracker.by_node("n1") is None


def test_node_joined_matches_before_the_next_snapshot():
    tracker = InstanceTracker(register_timeout_s=5)
    launch(tracker, "i-1")
    event = tracker.node_joined(node("n1", "i-1"), 1.0)
    assert event is not None and event.kind == "registered"
    tracker.node_gone("n1", goodbye=True, now=2.0)  # idled out before any snapshot saw it
    [left] = tracker.observe([], 10.0)
    assert left.kind == "left" and tracker.abnormal == {}
    assert tracker.live() == [] and PENDING not in {t.status for t in tracker.ended()}
