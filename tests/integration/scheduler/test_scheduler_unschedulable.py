"""Tasks no node can run fail with a 503 and a reason (``unschedulable_timeout_s``), and producers can
drain a node (``DRAIN {req_id, node_id}``): a real scheduler thread, scripted peers over real ZeroMQ."""

from __future__ import annotations

import time
from typing import Any

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Peer, dispatch, ready_node, wait_completed
from tests.support.waiting import wait_for


def _failed(producer: Any, task_id: str, timeout: float) -> dict[str, Any]:
    return wait_for(lambda: (t := producer.get(task_id))["status"] == "failed" and t, timeout, f"{task_id} failed")


def test_task_with_no_nodes_at_all_fails_with_503_and_reason(scheduler_factory, peers):
    sched = scheduler_factory(unschedulable_timeout_s=0.5)
    producer = peers("producer", sched)
    started = time.monotonic()
    task = producer.submit("cv2", want_result=True).header["task"]
    done = producer.expect(p.DONE, lambda m: m.header["task_id"] == task["id"], timeout=5)
    assert time.monotonic() - started < 5
    assert done.header["status"] == "failed" and done.header["error_status"] == 503
    expected = "no online node can run model 'cv2' on queue 'cpu' (no nodes online); gave up after 0.5s"
    assert done.header["error"] == expected
    assert producer.get(task["id"])["error"] == expected
    assert sched.stats()["failed"] == 1


def test_node_without_the_queue_is_named_in_the_reason(scheduler_factory, peers):
    sched = scheduler_factory(unschedulable_timeout_s=0.5)
    producer = peers("producer", sched)
    ready_node(peers, sched)  # a CPU node: refused the gpu queue
    task = producer.submit("lama").header["task"]
    assert task["queue"] == "gpu"
    failed = _failed(producer, task["id"], 5)
    expected = "no online node can run model 'lama' on queue 'gpu' (1 node online, none joined 'gpu')"
    assert failed["error"].startswith(expected)


def test_node_without_the_plugin_is_named_in_the_reason(scheduler_factory, peers, zctx):
    sched = scheduler_factory(unschedulable_timeout_s=0.5, routes={"RemoveBG": "cpu"})
    producer = peers("producer", sched)
    node = Peer(zctx, sched.control_endpoint, "node")
    try:
        caps = {"device": "cpu", "models": ["cv2"], "plugins": ["MakeGIF"], "queues_requested": [], "labels": {}}
        node.send(p.HELLO, {"node_id": "no-plugin", "capabilities": caps})
        node.expect(p.WELCOME)
        task = producer.submit("RemoveBG", kind="plugin").header["task"]
        failed = _failed(producer, task["id"], 5)
        assert failed["error"].startswith(
            "no online node can run plugin 'RemoveBG' on queue 'cpu' (1 node online, none of the 1 that joined "
            "'cpu' has plugin 'RemoveBG')"
        )
    finally:
        node.close()


def test_node_joining_before_the_timeout_runs_the_task(scheduler_factory, peers):
    sched = scheduler_factory(unschedulable_timeout_s=1.5)
    producer = peers("producer", sched)
    task = producer.submit("cv2").header["task"]
    assert producer.status(task["id"]) == "queued"
    node = ready_node(peers, sched)
    sent = node.expect_task()
    assert sent.header["task_id"] == task["id"]
    node.result(sent)
    wait_completed(producer, task["id"])


def test_busy_eligible_node_keeps_queued_tasks_alive(scheduler_factory, peers):
    """A task waiting behind a busy node that can run it is not "unschedulable", however long it waits."""
    sched = scheduler_factory(unschedulable_timeout_s=0.3)
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    _, first = dispatch(producer, node, "cv2")
    second = producer.submit("cv2").header["task"]
    deadline = time.monotonic() + 1.5  # five timeouts, checked by the scheduler every 75 ms
    while time.monotonic() < deadline:
        if time.monotonic() - node.last_beat > 0.05:  # the node stays online, busy with the first task
            node.heartbeat("busy", first.header["task_id"])
        assert producer.status(second["id"]) == "queued"
    node.result(first)
    got = node.expect_task()
    assert got.header["task_id"] == second["id"]
    node.result(got)
    wait_completed(producer, second["id"])


def test_zero_disables_the_check(scheduler_factory, peers):
    sched = scheduler_factory(unschedulable_timeout_s=0)
    producer = peers("producer", sched)
    task = producer.submit("cv2").header["task"]
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert producer.status(task["id"]) == "queued"


# ---------------------------------------------------------------------------------------------- DRAIN
def test_drain_unknown_node_is_404(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    reply = producer.request(p.DRAIN, {"node_id": "nobody"})
    assert reply.command == p.REJECTED and reply.header["status"] == 404 and reply.header["code"] == "not_found"
    bad = producer.request(p.DRAIN, {})  # node_id missing: malformed, still answered
    assert bad.command == p.REJECTED and bad.header["status"] == 400 and bad.header["code"] == "malformed"


def test_drain_busy_node_finishes_its_task_then_gets_no_more(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    busy = ready_node(peers, sched)
    first, got = dispatch(producer, busy, "cv2")
    reply = producer.request(p.DRAIN, {"node_id": busy.node_id})
    assert reply.command == p.STATS
    assert reply.header["node"]["id"] == busy.node_id and reply.header["node"]["state"] == "draining"
    busy.control.expect(p.DRAIN)
    busy.heartbeat("draining", got.header["task_id"])  # as a real node does: no reason to re-send DRAIN
    assert producer.request(p.DRAIN, {"node_id": busy.node_id}).command == p.STATS  # again: no error
    busy.result(got)
    wait_completed(producer, first["id"])
    second = producer.submit("cv2").header["task"]
    busy.ready()  # a draining node's READY is no credit
    other = ready_node(peers, sched)
    assert other.expect_task().header["task_id"] == second["id"]
    assert busy.take_task() is None
    assert busy.control.take(p.DRAIN) is None  # a second request sends no second DRAIN


def test_drained_nodes_make_their_tasks_unschedulable(scheduler_factory, peers):
    sched = scheduler_factory(unschedulable_timeout_s=0.5)
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    assert producer.request(p.DRAIN, {"node_id": node.node_id}).command == p.STATS
    task = producer.submit("cv2").header["task"]
    failed = _failed(producer, task["id"], 5)
    assert "(1 node online, the 1 that could are draining)" in failed["error"]


def test_drain_offline_node_is_409(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    node.control.send(p.BYE, {"node_id": node.node_id, "reason": "test"})
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["state"] == "offline", 5, "offline")
    reply = producer.request(p.DRAIN, {"node_id": node.node_id})
    assert reply.command == p.REJECTED and reply.header["status"] == 409 and reply.header["code"] == "node_offline"


def test_clock_starts_when_the_last_capable_node_left(scheduler_factory, peers):
    """A task older than the timeout does not fail the moment its last capable node leaves: the
    timeout counts from when that node was last online."""
    sched = scheduler_factory(unschedulable_timeout_s=1.0)
    producer = peers("producer", sched)
    node = peers("node", sched)
    node.hello()  # online and eligible, but no READY: the task stays queued
    task = producer.submit("cv2").header["task"]
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        node.control.pump()  # heartbeats
        assert producer.status(task["id"]) == "queued"
    node.control.send(p.BYE, {"node_id": node.node_id, "reason": "test"})
    left = time.monotonic()
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["state"] == "offline", 5, "offline")
    while time.monotonic() < left + 0.5:
        assert producer.status(task["id"]) == "queued"
    failed = _failed(producer, task["id"], 5)
    assert "(no nodes online)" in failed["error"]
    assert time.monotonic() - left >= 1.0
