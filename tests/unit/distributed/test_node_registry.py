"""node_registry.py: the credit rules every node handler and the dispatcher share."""

from __future__ import annotations

from lama_cleaner.plugins.distributed.scheduler.node_registry import NodeEntry, holds, slots_of


def busy_node() -> NodeEntry:
    node = NodeEntry(node_id="n", name="n", ctrl_ident=b"c", capabilities={}, allowed={"cpu", "gpu"}, rejected={})
    node.queue_idents = {"cpu": b"q1", "gpu": b"q2"}
    node.hold("t", 2, 1.0)
    return node


def test_outcome_is_the_next_credit_on_every_joined_queue():
    node = busy_node()
    assert holds(node, "t", 2) and not holds(node, "t", 1)
    assert not node.has_credit() and node.state == "busy"
    node.grant_implied_credit(5.0)
    assert node.current_task is None and node.ready == {"cpu", "gpu"}
    assert node.has_credit() and node.idle_since == 5.0


def test_outcome_saying_not_ready_frees_the_node_without_credit():
    node = busy_node()
    node.ready = {"cpu"}  # a stale READY that arrived while it was busy
    node.grant_implied_credit(5.0, ready=False)
    assert node.current_task is None and node.current_attempt is None
    assert node.state == "idle" and not node.has_credit() and node.ready == set()


def test_draining_node_gets_no_implied_credit():
    node = busy_node()
    node.draining = True
    node.grant_implied_credit(5.0)
    assert node.current_task is None and not node.has_credit()


def deep_node(slots: object) -> NodeEntry:
    caps = {"slots": slots}
    node = NodeEntry(node_id="n", name="n", ctrl_ident=b"c", capabilities=caps, allowed={"cpu"}, rejected={})
    node.queue_idents = {"cpu": b"q1"}
    node.ready = {"cpu"}
    return node


def test_slots_come_from_the_capabilities_and_default_to_one():
    assert slots_of({}) == 1 and slots_of({"slots": 3}) == 3
    assert slots_of({"slots": 0}) == 1 and slots_of({"slots": "2"}) == 1 and slots_of({"slots": True}) == 1
    assert slots_of({"slots": 10_000}) == 16


def test_a_node_with_two_slots_has_credit_until_it_holds_two_tasks():
    node = deep_node(2)
    assert node.has_credit() and node.free_slots == 2 and node.state == "idle"
    node.hold("a", 1, 1.0)
    assert node.has_credit() and node.free_slots == 1 and node.state == "busy"
    assert node.current_task == "a" and node.current_attempt == 1
    node.hold("b", 1, 2.0)
    assert not node.has_credit() and node.free_slots == 0 and node.ready == set()
    assert holds(node, "a", 1) and holds(node, "b", 1) and not holds(node, "b", 2)


def test_each_outcome_frees_its_own_slot_and_is_credit_again():
    node = deep_node(2)
    node.hold("a", 1, 1.0)
    node.hold("b", 3, 2.0)
    node.grant_implied_credit(5.0, "b")
    assert list(node.held) == ["a"] and node.has_credit() and node.free_slots == 1
    node.grant_implied_credit(6.0, "a", ready=False)
    assert node.held == {} and not node.has_credit() and node.state == "idle"


def test_a_ready_after_a_full_node_s_outcome_counts_once_the_slot_is_free():
    node = deep_node(2)
    node.hold("a", 1, 1.0)
    node.hold("b", 1, 1.0)
    node.release("a")
    assert not node.has_credit()  # ready was used up when the node filled: a slot alone is no credit
    node.make_ready(7.0)
    assert node.has_credit() and node.free_slots == 1


def test_one_slot_node_behaves_as_before():
    node = deep_node(None)
    node.hold("a", 1, 1.0)
    assert node.slots == 1 and not node.has_credit() and node.ready == set()
    assert node.public()["tasks"] == ["a"] and node.public()["slots"] == 1
