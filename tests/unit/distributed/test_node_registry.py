"""node_registry.py: the credit rules every node handler and the dispatcher share."""

from __future__ import annotations

from lama_cleaner.plugins.distributed.scheduler.node_registry import NodeEntry, holds


def busy_node() -> NodeEntry:
    node = NodeEntry(node_id="n", name="n", ctrl_ident=b"c", capabilities={}, allowed={"cpu", "gpu"}, rejected={})
    node.queue_idents = {"cpu": b"q1", "gpu": b"q2"}
    node.current_task, node.current_attempt = "t", 2
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
