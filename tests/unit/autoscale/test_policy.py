"""policy.py on hand-made snapshots: thresholds, windows, cooldowns, bounds, hysteresis, reasons."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.autoscale.config import QueuePolicy
from lama_cleaner.plugins.autoscale.decisions import SCALE_DOWN, SCALE_UP, ScaleRequest
from lama_cleaner.plugins.autoscale.policy import PolicyMemory, evaluate, plan_manual
from tests.unit.autoscale.snapshots import NodeInfo, managed, stats

FAST = dict(up_window_s=30, up_cooldown_s=60, down_window_s=120, down_cooldown_s=60, max_step_up=8)


def busy(node_id: str, **kwargs) -> NodeInfo:
    return managed(node_id, state="busy", current_task=f"task-of-{node_id}", **kwargs)


def test_a_backlog_that_stays_high_for_the_window_scales_up_with_a_readable_reason():
    policies = {"gpu": QueuePolicy(max_nodes=10, **FAST)}
    memory = PolicyMemory()
    snap = stats({"gpu": {"queued": 14, "running": 2}}, [busy("a"), busy("b")])
    assert evaluate(policies, snap, 0.0, memory) == []  # the window starts
    assert evaluate(policies, snap, 15.0, memory) == []
    [decision] = evaluate(policies, snap, 30.0, memory)
    assert (decision.queue, decision.action, decision.count) == ("gpu", SCALE_UP, 2)
    assert decision.reason == "scale_up queue=gpu +2: 14 queued > 8 for 30 s"


def test_a_spike_shorter_than_the_window_changes_nothing():
    policies = {"gpu": QueuePolicy(max_nodes=10, **FAST)}
    memory = PolicyMemory()
    high = stats({"gpu": {"queued": 20}}, [busy("a")])
    low = stats({"gpu": {"queued": 2}}, [busy("a")])
    for t, snap in [(0, high), (10, high), (20, low), (30, high), (40, high), (50, high)]:
        assert evaluate(policies, snap, float(t), memory) == [], t  # the lull at 20 s restarted the window
    assert len(evaluate(policies, high, 60.0, memory)) == 1


def test_scale_up_is_capped_by_step_max_nodes_and_provider_room():
    memory = PolicyMemory()
    snap = stats({"gpu": {"queued": 100}}, [busy("a")])
    policies = {"gpu": QueuePolicy(max_nodes=10, **{**FAST, "up_window_s": 0, "max_step_up": 3})}
    [d] = evaluate(policies, snap, 0.0, memory)
    assert d.count == 3 and d.reason.endswith("(capped by max_step_up=3)")

    policies = {"gpu": QueuePolicy(max_nodes=3, **{**FAST, "up_window_s": 0})}
    [d] = evaluate(policies, snap, 0.0, PolicyMemory())
    assert d.count == 2 and "(capped by max_nodes=3)" in d.reason

    memory = PolicyMemory()
    [d] = evaluate(policies, snap, 0.0, memory, headroom={"gpu": 1})
    assert d.count == 1 and "providers have room for 1" in d.reason
    memory = PolicyMemory()
    assert evaluate(policies, snap, 0.0, memory, headroom={"gpu": 0}) == []
    assert memory.queues["gpu"].held == "at providers have room for 0"


def test_pending_instances_count_as_nodes_so_a_cold_start_is_not_answered_twice():
    policies = {"gpu": QueuePolicy(max_nodes=10, **{**FAST, "up_window_s": 0, "up_cooldown_s": 0})}
    memory = PolicyMemory()
    snap = stats({"gpu": {"queued": 8, "oldest_queued_age_s": 500.0}}, [busy("a")])
    [d] = evaluate(policies, snap, 0.0, memory)
    assert d.count == 1  # ceil(8 / 4) = 2 wanted, 1 there
    # the new node has not registered yet: 2 nodes counted, the long wait does not ask for a third
    assert evaluate(policies, snap, 5.0, memory, pending={"gpu": 1}) == []


def test_a_long_wait_asks_for_one_more_node_even_with_a_short_queue():
    policies = {"gpu": QueuePolicy(max_nodes=10, max_wait_s=30, **{**FAST, "up_window_s": 0})}
    [d] = evaluate(policies, stats({"gpu": {"queued": 1, "oldest_queued_age_s": 45.0}}, [busy("a")]), 0.0,
                   PolicyMemory())  # fmt: skip
    assert d.count == 1 and d.reason == "scale_up queue=gpu +1: oldest task waited 45 s > 30 s for 0 s"


def test_scale_from_zero_does_not_wait_for_the_window():
    policies = {"gpu": QueuePolicy(min_nodes=0, max_nodes=4, **FAST)}
    [d] = evaluate(policies, stats({"gpu": {"queued": 1, "unschedulable": 1}}), 0.0, PolicyMemory())
    assert d.count == 1
    assert d.reason == "scale_up queue=gpu +1: 1 queued > 0, no node serves the queue"


def test_below_min_nodes_scales_up_at_once_and_says_so():
    policies = {"gpu": QueuePolicy(min_nodes=2, max_nodes=4, **FAST)}
    [d] = evaluate(policies, stats({"gpu": {}}), 0.0, PolicyMemory())
    assert d.count == 2 and d.reason == "scale_up queue=gpu +2: 0 nodes < min_nodes=2"


def test_up_cooldown_holds_further_scale_ups():
    policies = {"gpu": QueuePolicy(max_nodes=10, **{**FAST, "up_window_s": 0, "up_cooldown_s": 60})}
    memory = PolicyMemory()
    assert len(evaluate(policies, stats({"gpu": {"queued": 8}}, [busy("a")]), 0.0, memory)) == 1
    more = stats({"gpu": {"queued": 40}}, [busy("a"), busy("b")])
    assert evaluate(policies, more, 30.0, memory) == []
    assert memory.queues["gpu"].held.startswith("scale-up cooldown (30 of 60 s)")
    assert len(evaluate(policies, more, 60.0, memory)) == 1


def test_idle_nodes_are_drained_after_the_window_one_step_at_a_time():
    policies = {"gpu": QueuePolicy(min_nodes=1, max_nodes=10, max_step_down=1, **FAST)}
    memory = PolicyMemory()
    nodes = [managed("a"), managed("b"), managed("c")]
    snap = stats({"gpu": {"queued": 0}}, nodes)
    assert evaluate(policies, snap, 0.0, memory) == []
    assert evaluate(policies, snap, 119.0, memory) == []
    [d] = evaluate(policies, snap, 120.0, memory)
    assert d.action == SCALE_DOWN and d.count == 1 and len(d.drain) == 1
    assert d.reason == "scale_down queue=gpu -1: 1 of 3 nodes idle for 120 s, 0 queued <= 4"
    after = stats({"gpu": {}}, [n for n in nodes if n.node_id not in d.drain])
    assert evaluate(policies, after, 150.0, memory) == []  # down cooldown
    [d2] = evaluate(policies, after, 180.0, memory)
    last = stats({"gpu": {}}, [n for n in after.nodes if n.node_id not in d2.drain])
    assert evaluate(policies, last, 1000.0, memory) == []  # min_nodes=1 holds the last one


def test_a_node_that_ran_a_task_between_two_looks_is_not_idle_for_the_window():
    policies = {"gpu": QueuePolicy(max_nodes=10, **FAST)}
    memory = PolicyMemory()
    for t in range(0, 600, 5):  # idle at every sample, but one task finished every sample
        snap = stats({"gpu": {}}, [managed("a", tasks_done=t), managed("b", tasks_done=t)])
        assert evaluate(policies, snap, float(t), memory) == [], t


def test_hysteresis_keeps_nodes_while_the_backlog_is_near_the_threshold():
    policies = {"gpu": QueuePolicy(max_nodes=10, queued_per_node=4, down_backlog_fraction=0.5, **FAST)}
    memory = PolicyMemory()
    nodes = [managed("a"), managed("b"), busy("c")]
    # 5 queued wants 2 nodes, 3 are there; removing one leaves 2 nodes whose half-capacity is 4 < 5
    for t in (0.0, 200.0):
        assert evaluate(policies, stats({"gpu": {"queued": 5}}, nodes), t, memory) == []
    assert "above the scale-in threshold" in memory.queues["gpu"].held
    [d] = evaluate(policies, stats({"gpu": {"queued": 4}}, nodes), 300.0, memory)
    assert d.action == SCALE_DOWN


def test_nodes_the_autoscaler_did_not_start_are_never_drained():
    policies = {"gpu": QueuePolicy(max_nodes=10, **FAST)}
    memory = PolicyMemory()
    snap = stats({"gpu": {}}, [NodeInfo("static-1"), NodeInfo("static-2")])
    for t in (0.0, 500.0, 5000.0):
        assert evaluate(policies, snap, t, memory) == []


def test_busy_nodes_are_not_drained_by_the_policy_and_idle_ones_go_first():
    policies = {"gpu": QueuePolicy(max_nodes=10, max_step_down=5, **FAST)}
    memory = PolicyMemory()
    snap = stats({"gpu": {}}, [busy("a"), managed("b"), busy("c"), managed("d")])
    evaluate(policies, snap, 0.0, memory)
    [d] = evaluate(policies, snap, 200.0, memory)
    assert sorted(d.drain) == ["b", "d"]


def test_a_node_serving_a_queue_that_wants_more_is_kept():
    policies = {"gpu": QueuePolicy(max_nodes=10, **FAST), "cpu": QueuePolicy(max_nodes=10, **FAST)}
    memory = PolicyMemory()
    shared = managed("shared", queues=("gpu", "cpu"))
    snap = stats({"gpu": {}, "cpu": {"queued": 50}}, [shared, busy("x", queues=("cpu",))])
    for t in (0.0, 200.0, 400.0):
        assert all(d.action != SCALE_DOWN for d in evaluate(policies, snap, t, memory))


def test_lowering_max_nodes_drains_the_excess_at_once_idle_first():
    policies = {"gpu": QueuePolicy(max_nodes=2, **FAST)}
    memory = PolicyMemory()
    snap = stats({"gpu": {"queued": 3}}, [busy("a", progress=0.9), busy("b", progress=0.1), managed("c"), busy("d")])
    [d] = evaluate(policies, snap, 0.0, memory)
    assert d.action == SCALE_DOWN and d.drain == ("c", "a")
    assert d.reason == "scale_down queue=gpu -2: 4 nodes > max_nodes=2"


def test_lowering_max_nodes_drains_the_excess_even_while_the_backlog_wants_more():
    policies = {"gpu": QueuePolicy(max_nodes=1, **FAST)}
    snap = stats({"gpu": {"queued": 50}}, [busy("a", progress=0.2), busy("b", progress=0.7)])
    [d] = evaluate(policies, snap, 0.0, PolicyMemory())
    assert d.action == SCALE_DOWN and d.drain == ("b",)  # the one closest to done


def test_nodes_already_leaving_are_neither_counted_nor_chosen_again():
    policies = {"gpu": QueuePolicy(max_nodes=10, **FAST)}
    memory = PolicyMemory()
    snap = stats({"gpu": {}}, [managed("a"), managed("b")])
    evaluate(policies, snap, 0.0, memory)
    [d] = evaluate(policies, snap, 200.0, memory)
    memory.queues["gpu"].last_down = None  # cooldown aside, the same node is not chosen twice
    [d2] = evaluate(policies, snap, 200.0, memory, leaving=d.drain)
    assert set(d.drain).isdisjoint(d2.drain)


BOUNDS = "min_nodes=1..max_nodes=5)"


@pytest.mark.parametrize(
    ("request_text", "action", "count", "reason"),
    [
        ("+2", SCALE_UP, 2, "scale_up queue=gpu +2: manual +2 (2 -> 4 nodes)"),
        ("=10", SCALE_UP, 3, "scale_up queue=gpu +3: manual =10 (2 -> 5 nodes, kept within " + BOUNDS),
        ("-1", SCALE_DOWN, 1, "scale_down queue=gpu -1: manual -1 (2 -> 1 nodes)"),
        ("=0", SCALE_DOWN, 1, "scale_down queue=gpu -1: manual =0 (2 -> 1 nodes, kept within " + BOUNDS),
        ("=2", "none", 0, "no change queue=gpu: manual =2 (2 -> 2 nodes)"),
    ],
)
def test_manual_requests_stay_within_bounds(request_text, action, count, reason):
    policy = QueuePolicy(min_nodes=1, max_nodes=5, **FAST)
    memory = PolicyMemory()
    snap = stats({"gpu": {}}, [busy("a"), managed("b")])
    d = plan_manual("gpu", ScaleRequest.parse(request_text), policy, snap, 0.0, memory)
    assert (d.action, d.count, d.reason, d.source) == (action, count, reason, "manual")
    if action == SCALE_DOWN:
        assert d.drain == ("b",)  # the idle one, never the busy one while an idle one exists


def test_a_manual_decision_starts_the_cooldowns():
    policy = QueuePolicy(min_nodes=0, max_nodes=5, **FAST)
    memory = PolicyMemory()
    snap = stats({"gpu": {}}, [managed("a"), managed("b")])
    evaluate({"gpu": policy}, snap, 0.0, memory)
    plan_manual("gpu", ScaleRequest.parse("+1"), policy, snap, 150.0, memory)
    assert evaluate({"gpu": policy}, snap, 160.0, memory) == []  # down cooldown after the manual step
    assert len(evaluate({"gpu": policy}, snap, 210.0, memory)) == 1


@pytest.mark.parametrize("text", ["", "x", "+", "*2", "+-1", "2.5", "= -1"])
def test_bad_manual_requests_are_refused(text):
    with pytest.raises(ValueError, match="expected =N, \\+N or -N"):
        ScaleRequest.parse(text)


def test_manual_request_targets():
    assert [ScaleRequest.parse(t).target(3) for t in ("=1", "+2", "-5", "4", " + 1 ")] == [1, 5, 0, 4, 4]
