"""A busy node that reconnects names its task in HELLO and keeps it: no task runs on two nodes.

Scripted peers only: the node drops its sockets and says HELLO again (a network drop or a
scheduler restart, as a real node does), while an idle node waits with credit, ready to take the
task if the scheduler wrongly gave it up.
"""

from __future__ import annotations

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import dispatch, ready_node, wait_completed
from tests.support.waiting import wait_for


def _nodes(producer) -> dict[str, dict]:
    return {n["id"]: n for n in producer.request(p.NODES, {}).header["nodes"]}


def test_reconnect_before_liveness_keeps_the_task_on_its_node(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    busy = ready_node(peers, sched)
    task, running = dispatch(producer, busy, "cv2")
    spare = ready_node(peers, sched)
    wait_for(lambda: _nodes(producer)[spare.node_id]["credit"] == ["cpu"], message="spare node idle with credit")

    busy.reconnect()  # new sockets, well within the liveness period
    busy.hello(running=running)

    info = producer.get(task["id"])
    assert (info["status"], info["node"], info["attempts"]) == ("processing", busy.node_id, 1)
    nodes = _nodes(producer)
    assert nodes[busy.node_id]["state"] == "busy" and nodes[busy.node_id]["current_task"] == task["id"]
    assert nodes[busy.node_id]["credit"] == []
    busy.result(running, body=b"once")
    wait_completed(producer, task["id"])
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"once"}
    assert spare.take_task() is None
    stats = sched.stats()
    assert (stats["dispatched"], stats["completed"], stats["duplicates"]) == (1, 1, 0)
    assert stats["retries"] == 0 and stats["requeued_on_node_loss"] == 0
    # The spare node had credit all along: the next task is its.
    other = producer.submit("cv2").header["task"]
    assert spare.expect_task().header["task_id"] == other["id"]


def test_node_declared_lost_reclaims_its_requeued_task(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task, running = dispatch(producer, node, "cv2")
    node.silent = True
    wait_for(lambda: _nodes(producer)[node.node_id]["state"] == "offline", message="node declared lost")
    assert producer.status(task["id"]) == "queued"  # retry pending: nobody else could take it yet
    node.silent = False

    node.reconnect()
    node.hello(running=running)

    info = producer.get(task["id"])
    assert (info["status"], info["node"], info["attempts"]) == ("processing", node.node_id, 1)
    spare = ready_node(peers, sched)
    wait_for(lambda: _nodes(producer)[spare.node_id]["credit"] == ["cpu"], message="spare node idle with credit")
    node.result(running, body=b"kept")
    wait_completed(producer, task["id"])
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"kept"}
    assert spare.take_task() is None
    stats = sched.stats()
    assert (stats["dispatched"], stats["reattached"], stats["duplicates"]) == (1, 1, 0)


def test_reconnecting_node_is_told_to_cancel_a_task_dispatched_elsewhere(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    lost = ready_node(peers, sched)
    task, first = dispatch(producer, lost, "cv2")
    lost.silent = True
    other = ready_node(peers, sched)
    second = other.expect_task(timeout=10)
    assert second.header["attempt"] == 2
    lost.silent = False

    lost.reconnect()
    lost.hello(running=first)

    cancel = lost.control.expect(p.CANCEL)
    assert cancel.header == {"task_id": task["id"], "attempt": 1}
    info = producer.get(task["id"])
    assert (info["status"], info["node"]) == ("processing", other.node_id)
    assert _nodes(producer)[lost.node_id]["state"] == "busy"  # until it confirms
    lost.cancelled(first)
    wait_for(lambda: _nodes(producer)[lost.node_id]["state"] == "idle", message="lost node idle again")
    other.result(second, body=b"from-2")
    wait_completed(producer, task["id"])
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"from-2"}
    assert sched.stats()["reattached"] == 0


def test_reconnecting_node_is_told_to_cancel_a_cancelled_task(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task, running = dispatch(producer, node, "cv2")
    producer.request(p.CANCEL, {"task_id": task["id"]})
    node.control.expect(p.CANCEL)  # lost with the old connection, say
    node.reconnect()
    node.hello(running=running)
    assert node.control.expect(p.CANCEL).header == {"task_id": task["id"], "attempt": 1}
    assert producer.status(task["id"]) == "cancelled"


def test_scheduler_restart_lets_the_busy_node_reclaim_its_task(tmp_path, scheduler_factory, peers):
    # A long liveness: the start-up hold (one liveness period) must outlast the reconnects below.
    first = scheduler_factory(heartbeat_liveness=40)
    producer = peers("producer", first)
    busy = ready_node(peers, first)
    task, running = dispatch(producer, busy, "cv2")
    first.stop()
    assert first.join(10)

    second = scheduler_factory(heartbeat_liveness=40)  # same data dir: recovers the journal
    assert second.recovery.requeued == [task["id"]]
    producer = peers("producer", second)
    spare = ready_node(peers, second)  # idle, with credit, before the busy node is back
    wait_for(lambda: _nodes(producer)[spare.node_id]["credit"] == ["cpu"], message="spare node idle with credit")
    assert producer.status(task["id"]) == "queued"

    busy.reconnect(second)
    busy.hello(running=running)

    info = producer.get(task["id"])
    # Its attempt goes on, so the attempt refunded by recovery is charged again.
    assert (info["status"], info["node"], info["attempts"]) == ("processing", busy.node_id, 1)
    busy.result(running, body=b"survived")
    wait_completed(producer, task["id"])
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"survived"}
    assert spare.take_task() is None
    stats = second.stats()
    assert (stats["dispatched"], stats["reattached"], stats["duplicates"]) == (0, 1, 0)
    # Every interrupted task was reclaimed: dispatch does not wait out the hold.
    other = producer.submit("cv2").header["task"]
    assert spare.expect_task(timeout=3).header["task_id"] == other["id"]
