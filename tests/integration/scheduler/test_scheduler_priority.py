"""Task priorities through a real scheduler: SUBMIT's optional ``task.priority`` decides which queued
task a freed node gets, FIFO within a priority, across a restart on the same data directory, and a
bad value is REJECTED 400 with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, ScriptedNode, dispatch, ready_node


def submit(producer: Producer, priority: int | None = None) -> dict[str, Any]:
    extra = {} if priority is None else {"priority": priority}
    reply = producer.submit("cv2", **extra)
    assert reply.command == p.ACCEPTED, reply.header
    return reply.header["task"]


def drain_in_order(node: ScriptedNode, count: int) -> list[str]:
    """Complete ``count`` tasks one at a time (each RESULT frees the node for the next TASK)."""
    got = []
    for _ in range(count):
        task = node.expect_task()
        got.append(task.header["task_id"])
        node.result(task)
    return got


def test_a_freed_node_gets_the_high_priority_task_first_then_fifo(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    _, running = dispatch(producer, node)  # the node is busy from here on
    lows = [submit(producer, 1) for _ in range(3)]
    default = submit(producer)  # no field: the classic routes' priority
    high = submit(producer, 9)
    assert [t["priority"] for t in (*lows, default, high)] == [1, 1, 1, 5, 9]
    assert [t["position"] for t in lows] == [0, 1, 2]  # each, when accepted, was last in line
    assert high["position"] == 0
    expected = [high["id"], default["id"], *(t["id"] for t in lows)]
    assert [producer.get(i)["position"] for i in expected] == [0, 1, 2, 3, 4]
    node.result(running)  # frees the node
    assert drain_in_order(node, 5) == expected


def test_the_priority_order_survives_a_scheduler_restart(scheduler_factory, peers):
    first = scheduler_factory()
    producer = peers("producer", first)
    lows = [submit(producer, 2)["id"] for _ in range(2)]
    mid = submit(producer, 5)["id"]
    high = submit(producer, 8)["id"]
    first.stop()
    assert first.join(10)

    second = scheduler_factory()  # same data directory, so the same journal
    producer = peers("producer", second)
    expected = [high, mid, *lows]
    assert [producer.get(i)["position"] for i in expected] == [0, 1, 2, 3]
    assert [producer.get(i)["priority"] for i in expected] == [8, 5, 2, 2]
    node = ready_node(peers, second)
    assert drain_in_order(node, 4) == expected


@pytest.mark.parametrize("bad", [10, -1, "9", 2.0, True, [5]])
def test_a_bad_priority_is_rejected_400_and_nothing_is_queued(scheduler_factory, peers, bad):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    reply = producer.submit("cv2", priority=bad)
    assert reply.command == p.REJECTED
    assert reply.header["status"] == 400 and reply.header["code"] == "bad_request"
    assert f"priority must be an integer from 0 to 9, got {bad!r}" in reply.header["message"]
    stats = producer.request(p.QUEUES, {}).header["queues"]
    assert sum(q["queued"] for q in stats) == 0


def test_a_null_priority_means_the_default(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    assert submit(producer, None)["priority"] == 5
    reply = producer.submit("cv2", priority=None)
    assert reply.command == p.ACCEPTED and reply.header["task"]["priority"] == 5
