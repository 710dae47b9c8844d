"""The node's lifecycle machine (``node/lifecycle.py``), driven directly: no sockets, no processes."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.distributed.node import lifecycle as lc
from lama_cleaner.plugins.distributed.node.lifecycle import IllegalTransition, NodeLifecycle
from lama_cleaner.plugins.distributed.wire import protocol as p


def serving_and_joined() -> NodeLifecycle:
    node = NodeLifecycle()
    node.start()
    node.connect()
    node.welcome()
    return node


def test_a_node_starts_joins_works_and_stops():
    node = NodeLifecycle()
    assert node.state == "starting"
    node.start()
    assert node.state == "joining" and not node.joined
    node.connect()
    assert node.state == "joining"
    node.welcome()
    assert (node.state, node.reported_state) == ("idle", p.NODE_IDLE)
    node.take()
    assert (node.state, node.reported_state) == ("busy", p.NODE_BUSY)
    node.release()
    assert node.stop(deadline=5.0) is True
    assert (node.state, node.reported_state) == ("stopping", p.NODE_DRAINING)
    assert not node.stop_due(4.9) and node.stop_due(5.0)
    node.exit()
    assert node.state == "stopped" and node.stopped and node.leaving


def test_every_state_name_is_reachable_and_listed():
    seen = set()
    node = NodeLifecycle()
    seen.add(node.state)
    for step in ("start", "connect", "welcome", "take", "release", "drain", "lost", "connect", "welcome"):
        getattr(node, step)()
        seen.add(node.state)
    node.stop(1.0)
    seen.add(node.state)
    node.exit()
    seen.add(node.state)
    assert seen == set(lc.STATES)


def test_a_task_held_across_a_reconnect_stays_held():
    node = serving_and_joined()
    node.take()
    node.lost()
    assert node.state == "joining" and node.busy and node.reported_state == p.NODE_BUSY
    node.connect()
    node.welcome()
    assert node.state == "busy"


def test_a_drain_survives_a_reconnect_and_is_never_taken_back():
    node = serving_and_joined()
    node.drain()
    node.lost()
    node.connect()
    node.welcome()
    assert node.state == "draining" and node.reported_state == p.NODE_DRAINING and not node.accepting
    node.drain()  # asked again
    assert node.draining
    with pytest.raises(IllegalTransition):
        node.start()


def test_a_stop_before_the_loop_ran_wins_over_its_start():
    node = NodeLifecycle()
    node.stop(deadline=3.0)
    node.start()
    assert node.state == "stopping" and node.stop_deadline == 3.0


def test_a_second_stop_only_shortens_the_grace_and_a_drain_adds_nothing_to_a_stop():
    node = serving_and_joined()
    assert node.stop(deadline=10.0) is True
    assert node.stop(deadline=0.0) is False, "the stop had begun already: the scheduler heard then"
    assert node.stop_deadline == 0.0
    assert node.stop(deadline=20.0) is False and node.stop_deadline == 0.0, "a later deadline never extends it"
    node.drain()
    assert node.stopping and not node.draining


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        (("start", "connect", "welcome", "take"), "take"),  # one task at a time
        (("start",), "release"),  # nothing held
        (("start",), "welcome"),  # no HELLO out
        (("start", "connect"), "connect"),  # one control socket at a time
        (("start",), "start"),
        (("start", "exit"), "exit"),  # stopped is final
        (("start", "exit"), "drain"),
    ],
)
def test_illegal_transitions_raise_and_change_nothing(steps, illegal):
    node = NodeLifecycle()
    for step in steps:
        if step == "stop":
            node.stop(1.0)
        else:
            getattr(node, step)()
    before = (node.mode, node.link, node.work)
    with pytest.raises(IllegalTransition) as raised:
        getattr(node, illegal)()
    assert raised.value.event == illegal
    assert (node.mode, node.link, node.work) == before


def test_the_tables_name_only_known_states_and_stopped_is_final():
    for table, states in (
        (lc.MODE_TRANSITIONS, lc.MODES),
        (lc.LINK_TRANSITIONS, lc.LINKS),
        (lc.WORK_TRANSITIONS, lc.WORKS),
    ):
        for (state, _event), after in table.items():
            assert state in states and after in states
    assert not any(state == lc.STOPPED for state, _ in lc.MODE_TRANSITIONS)
