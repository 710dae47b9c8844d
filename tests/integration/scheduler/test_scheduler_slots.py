"""A real scheduler thread (real ZeroMQ, real SQLite journal) and scripted nodes that advertise
``capabilities.slots`` (protocol minor 2): credit is a node's free slots while it is ready, each
outcome frees one, and every task a lost, re-registering or leaving node holds is treated as one
task is for a one-slot node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, ScriptedNode, SlottedNode
from tests.support.waiting import wait_for


@pytest.fixture
def slotted(zctx: zmq.Context) -> Iterator[Callable[..., SlottedNode]]:
    """Make a node with ``slots`` that said HELLO and READY; every one is closed after the test."""
    made: list[SlottedNode] = []

    def make(sched: Any, slots: int = 2) -> SlottedNode:
        node = SlottedNode(zctx, sched, slots)
        made.append(node)
        node.hello()
        node.ready()
        return node

    yield make
    for node in made:
        node.close()


def _status(producer: Producer, task_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(lambda: (t := producer.get(task_id))["status"] in statuses and t, 10, f"task in {statuses}")


def _public(producer: Producer, node: ScriptedNode) -> dict[str, Any]:
    """The node as ``NODES`` shows it (the registry's public view)."""
    nodes = producer.request(p.NODES, {}).header["nodes"]
    return next(n for n in nodes if n["id"] == node.node_id)


def _no_task(node: ScriptedNode, seconds: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert node.take_task() is None, "a node with no free slot was sent a TASK"
        time.sleep(0.02)


def test_a_two_slot_node_holds_two_tasks_and_each_outcome_frees_one(
    scheduler_factory: Callable[..., Any], peers: Callable[..., Any], slotted: Callable[..., SlottedNode]
):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = slotted(sched)
    ids = [producer.submit("cv2").header["task"]["id"] for _ in range(3)]
    first, second = node.expect_task(), node.expect_task()
    assert {first.header["task_id"], second.header["task_id"]} == set(ids[:2])
    _no_task(node)
    shown = _public(producer, node)
    assert set(shown["tasks"]) == {first.header["task_id"], second.header["task_id"]} and shown["slots"] == 2
    assert shown["current_task"] == shown["tasks"][0] and shown["state"] == "busy" and shown["credit"] == []
    node.done(first)
    third = node.expect_task()
    assert third.header["task_id"] == ids[2]
    node.done(second)
    node.done(third)
    for task_id in ids:
        assert _status(producer, task_id, ("completed",))["attempts"] == 1


def test_one_task_per_node_before_any_node_gets_a_second(
    scheduler_factory: Callable[..., Any], peers: Callable[..., Any], slotted: Callable[..., SlottedNode]
):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    nodes = [slotted(sched), slotted(sched)]
    for node in nodes:
        wait_for(lambda node=node: _public(producer, node)["credit"], 10, "the node's READY handled")
    for _ in range(2):  # one at a time: the second finds one node warm with a free slot, one empty
        task_id = producer.submit("cv2").header["task"]["id"]
        _status(producer, task_id, ("processing",))
    got = [n.expect_task() for n in nodes]
    assert len({m.header["task_id"] for m in got}) == 2


def test_a_silent_two_slot_node_loses_both_tasks_and_each_completes_once_elsewhere(
    scheduler_factory: Callable[..., Any], peers: Callable[..., Any], slotted: Callable[..., SlottedNode]
):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    lost = slotted(sched)
    ids = [producer.submit("cv2").header["task"]["id"] for _ in range(2)]
    lost.expect_task(), lost.expect_task()
    lost.silent = True
    wait_for(lambda: _public(producer, lost)["state"] == "offline", 15, "the silent node offline")
    other = slotted(sched)
    for _ in ids:
        other.done(other.expect_task(timeout=10))
    for task_id in ids:
        assert _status(producer, task_id, ("completed",))["attempts"] == 2
    assert sched.stats()["requeued_on_node_loss"] == 2


def test_a_heartbeat_that_no_longer_names_a_held_task_retries_that_one_only(
    scheduler_factory: Callable[..., Any], peers: Callable[..., Any], slotted: Callable[..., SlottedNode]
):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = slotted(sched)
    producer.submit("cv2"), producer.submit("cv2")
    kept, dropped = node.expect_task(), node.expect_task()
    node.held.pop(dropped.header["task_id"])  # as if its TASK had been lost on the way
    requeued = _status(producer, dropped.header["task_id"], ("queued", "processing"))
    assert requeued["attempts"] == 1
    again = node.expect_task(timeout=10)  # the freed slot takes it again (a new attempt)
    assert again.header["task_id"] == dropped.header["task_id"] and again.header["attempt"] == 2
    assert kept.header["task_id"] in _public(producer, node)["tasks"]
    node.done(kept)
    node.done(again)
    assert _status(producer, kept.header["task_id"], ("completed",))["attempts"] == 1


def test_a_node_that_re_registers_keeps_every_task_its_hello_names(
    scheduler_factory: Callable[..., Any], peers: Callable[..., Any], slotted: Callable[..., SlottedNode]
):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = slotted(sched)
    producer.submit("cv2"), producer.submit("cv2")
    a, b = node.expect_task(), node.expect_task()
    node.reconnect()
    node.hello()
    node.ready()
    assert set(_public(producer, node)["tasks"]) == {a.header["task_id"], b.header["task_id"]}
    node.done(a)
    node.done(b)
    for msg in (a, b):
        assert _status(producer, msg.header["task_id"], ("completed",))["attempts"] == 1


def test_bye_naming_one_started_task_charges_it_and_takes_the_other_back_free(
    scheduler_factory: Callable[..., Any], peers: Callable[..., Any], slotted: Callable[..., SlottedNode]
):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = slotted(sched)
    producer.submit("cv2"), producer.submit("cv2")
    started, unstarted = node.expect_task(), node.expect_task()
    node.silent = True
    started_id = started.header["task_id"]
    node.control.send(p.BYE, {"node_id": node.node_id, "reason": "shutdown", "task_id": started_id,
                              "task_ids": [started_id]})  # fmt: skip
    charged = _status(producer, started_id, ("queued", "failed"))
    free = _status(producer, unstarted.header["task_id"], ("queued", "failed"))
    assert charged["attempts"] == 1 and free["attempts"] == 0
