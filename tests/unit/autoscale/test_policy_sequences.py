"""The policy replayed over recorded load shapes in the simulator: bursts, ramps, oscillation, zero.

Each test states what a person operating the queue would expect (capacity arrives quickly, leaves
slowly, never flaps, never exceeds its bounds, never drains a busy node while an idle one exists)
and checks it on the whole recorded run.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lama_cleaner.plugins.autoscale.config import QueuePolicy
from lama_cleaner.plugins.autoscale.decisions import SCALE_DOWN, SCALE_UP
from tests.unit.autoscale.simulation import Simulation

POLICY = QueuePolicy(
    min_nodes=0,
    max_nodes=8,
    queued_per_node=4,
    max_wait_s=30,
    up_window_s=10,
    up_cooldown_s=30,
    max_step_up=4,
    down_window_s=120,
    down_cooldown_s=60,
    max_step_down=1,
)


def no_down_right_after_a_decision(sim: Simulation, cooldown: float) -> bool:
    times = [d.at for d in sim.decisions]
    return all(
        b.at - a.at >= cooldown
        for a, b in zip(sim.decisions, sim.decisions[1:], strict=False)
        if b.action == SCALE_DOWN
    ) and times == sorted(times)


def test_burst_scales_up_fast_drains_the_backlog_then_scales_to_zero_slowly():
    sim = Simulation(POLICY)
    sim.run(lambda t: 60 if t == 0 else 0, duration_s=1800)
    first = sim.decisions[0]
    assert first.action == SCALE_UP and first.at == 0.0  # from zero: no window
    assert max(count for _, count in sim.node_counts) == POLICY.max_nodes
    ups = [d for d in sim.decisions if d.action == SCALE_UP]
    assert ups[-1].at <= 60  # all capacity within a minute of the burst
    assert sorted(sim.done) == list(range(60))  # every task ran, once
    assert len(sim.dispatched) == 60
    assert sim.alive() == 0  # back to zero
    downs = [d for d in sim.decisions if d.action == SCALE_DOWN]
    assert len(downs) == POLICY.max_nodes and all(d.count == 1 for d in downs)  # slow, one at a time
    assert no_down_right_after_a_decision(sim, POLICY.down_cooldown_s)
    assert sim.drained_busy_while_idle == 0


def test_a_slow_ramp_only_grows_until_the_load_stops():
    sim = Simulation(POLICY)
    # arrivals grow from 0 to 2 tasks per 5 s tick over 15 minutes (nodes do 0.5 task per tick each)
    sim.run(lambda t: int(t // 450) + (1 if t % 10 == 0 else 0), duration_s=900)
    assert [d.action for d in sim.decisions] == [SCALE_UP] * len(sim.decisions)
    counts = [c for _, c in sim.node_counts]
    assert counts == sorted(counts)  # never shrank during the ramp
    assert counts[-1] <= POLICY.max_nodes


def test_oscillating_load_does_not_flap():
    sim = Simulation(POLICY)
    # one minute at 4 tasks per tick, one minute at nothing, for two hours
    sim.run(lambda t: 4 if (t // 60) % 2 == 0 else 0, duration_s=7200)
    downs = [d for d in sim.decisions if d.action == SCALE_DOWN]
    assert downs == []  # a one-minute lull is shorter than down_window_s: nodes stay
    assert len(sim.decisions) <= 4  # the capacity found early is kept
    assert sim.flips() == 0


def test_load_oscillating_slower_than_the_windows_changes_direction_a_bounded_number_of_times():
    sim = Simulation(POLICY)
    period = 600.0  # 5 minutes busy, 5 minutes quiet
    duration = 6 * 3600.0
    sim.run(lambda t: 3 if (t // (period / 2)) % 2 == 0 else 0, duration_s=duration)
    assert no_down_right_after_a_decision(sim, POLICY.down_cooldown_s)
    # at most one change of direction per half period
    assert sim.flips() <= 2 * duration / period
    half = period / 2
    quiet = [d for d in sim.decisions if (d.at // half) % 2 == 1]
    # nodes leave only in the quiet halves, and capacity is added only while work arrives (or its backlog lasts)
    assert all(d.action == SCALE_DOWN for d in quiet if d.at % half > POLICY.up_cooldown_s * 2)
    assert all(d.action == SCALE_UP for d in sim.decisions if (d.at // half) % 2 == 0 and d.at > half)
    assert sim.drained_busy_while_idle == 0


def test_scale_to_zero_and_back_when_work_arrives():
    sim = Simulation(POLICY)
    sim.run(lambda t: 8 if t == 0 else 0, duration_s=900)
    assert sim.alive() == 0
    before = len(sim.decisions)
    arrival = sim.now
    sim.run(lambda t: 1 if t == arrival else 0, duration_s=300)
    back = sim.decisions[before]
    assert back.action == SCALE_UP and back.at == arrival and back.count == 1
    assert sorted(sim.done) == list(range(9))


def test_a_provider_at_capacity_is_never_asked_for_more():
    sim = Simulation(POLICY, provider_limit=2)
    sim.run(lambda t: 40 if t == 0 else 0, duration_s=900)
    assert max(count for _, count in sim.node_counts) == 2
    assert sum(d.count for d in sim.decisions if d.action == SCALE_UP) == 2
    assert sorted(sim.done) == list(range(40))  # slower, but all of it


def test_min_nodes_keeps_warm_capacity_through_quiet_hours():
    sim = Simulation(QueuePolicy(**{**POLICY.__dict__, "min_nodes": 2}))
    sim.run(lambda t: 0, duration_s=3600)
    assert [d.count for d in sim.decisions] == [2]
    assert sim.alive() == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=12), min_size=20, max_size=200))
def test_invariants_hold_for_any_recorded_arrivals(arrivals):
    sim = Simulation(POLICY)
    for n in arrivals:
        sim.step(n)
    sim.run(lambda t: 0, duration_s=1200)
    assert max(count for _, count in sim.node_counts) <= POLICY.max_nodes
    assert sim.drained_busy_while_idle == 0
    assert no_down_right_after_a_decision(sim, POLICY.down_cooldown_s)
    ups = [d.at for d in sim.decisions if d.action == SCALE_UP]
    assert all(b - a >= POLICY.up_cooldown_s for a, b in zip(ups, ups[1:], strict=False))
    assert sorted(sim.done) == list(range(sum(arrivals)))  # nothing lost, nothing twice
    assert sim.alive() == 0  # and it always comes back to zero once the work is done
