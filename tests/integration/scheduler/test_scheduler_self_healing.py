"""Node state the scheduler must not lose for good to one reconnect or one dropped message: a real
scheduler thread, scripted protocol-v1 nodes over real ZeroMQ.

- credit: an idle node whose queue socket reconnected (new identity) lost its credit when the next
  TASK bounced; the scheduler asks it for READY (``HEARTBEAT send_ready``) and the node works again;
- drain: a drained node that re-registers stays drained and is told DRAIN again; a lost DRAIN is
  re-sent while the node keeps saying it is not draining; BYE ends the drain;
- retries: a retryable failure goes to another capable node, even one that becomes idle later.
"""

from __future__ import annotations

from lama_cleaner.plugins.distributed.config import RetryConfig
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Peer, ready_node, watching_producer
from tests.support.waiting import wait_for


def _asks_for_ready(msg: p.Message) -> bool:
    return msg.header.get("send_ready") is True


# ---------------------------------------------------------------------------------------------- credit
def test_an_idle_node_whose_queue_socket_reconnected_is_asked_for_ready_and_gets_work(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["credit"] == ["cpu"], 5, "the node's credit")
    # The queue socket reconnects on its own (as ZeroMQ does after a network cut): same node, new
    # identity at the queue ROUTER, and no new READY, since the node has been idle all along.
    old = node.queue_peers["cpu"]
    old.close()
    fresh = Peer(node.ctx, old.endpoint, "node")
    fresh.on_pump = node.tick
    node.queue_peers["cpu"] = fresh

    task = producer.submit("cv2").header["task"]
    # The TASK bounces off the vanished identity (or is lost with it): the scheduler must ask for
    # READY again rather than wait forever for a credit the idle node will not send on its own.
    node.control.expect(p.HEARTBEAT, _asks_for_ready, timeout=10)
    node.ready()
    sent = node.expect_task(timeout=10)
    assert sent.header["task_id"] == task["id"]
    node.result(sent)
    wait_for(lambda: producer.status(task["id"]) == "completed", 5, "the task to complete")
    # Holding credit again, it is not asked any more: a task runs at once.
    node.ready()
    second = producer.submit("cv2").header["task"]
    assert node.expect_task().header["task_id"] == second["id"]


def test_a_node_with_credit_or_a_task_is_not_asked_for_ready(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task = producer.submit("cv2").header["task"]
    sent = node.expect_task()
    # Busy for several intervals (heartbeats going on, "busy" as a real node says): never asked.
    for _ in range(8):
        node.heartbeat("busy", task["id"])
        node.control.expect(p.HEARTBEAT)  # the scheduler's periodic one, every 0.25 s
    node.result(sent)
    node.ready()
    wait_for(lambda: producer.status(task["id"]) == "completed", 5, "the task to complete")
    for _ in range(4):
        node.control.expect(p.HEARTBEAT)  # idle, with credit: periodic heartbeats only
    asked = [m for m in node.control.inbox if m.command == p.HEARTBEAT and _asks_for_ready(m)]
    assert asked == [] and node.control.take(p.HEARTBEAT, _asks_for_ready) is None


# ---------------------------------------------------------------------------------------------- drain
def test_a_drained_node_stays_drained_when_it_re_registers(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    assert producer.request(p.DRAIN, {"node_id": node.node_id}).command == p.STATS
    node.control.expect(p.DRAIN)

    node.reconnect()  # a network drop: new sockets, HELLO again with the same node id
    node.hello()
    node.control.expect(p.DRAIN)
    [listed] = producer.request(p.NODES, {}).header["nodes"]
    assert listed["state"] == "draining" and listed["credit"] == []
    node.ready()  # no credit while draining
    wait_for(lambda: "cpu" in sched.nodes[node.node_id].queue_idents, 5, "the READY to be handled")
    other = ready_node(peers, sched)
    task = producer.submit("cv2").header["task"]
    assert other.expect_task().header["task_id"] == task["id"]
    assert node.take_task() is None


def test_a_lost_drain_is_sent_again_while_the_node_says_it_is_not_draining(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    assert producer.request(p.DRAIN, {"node_id": node.node_id}).command == p.STATS
    node.control.expect(p.DRAIN)  # "lost": the scripted node ignores it and heartbeats "idle" on
    node.control.expect(p.DRAIN, timeout=5)
    # Once it says "draining", as a node that got DRAIN does, nothing more is sent.
    node.silent = True
    node.heartbeat("draining")
    node.control.expect(p.HEARTBEAT)
    node.control.inbox.clear()
    for _ in range(6):  # well over a liveness window (4 x 0.25 s) of "draining" heartbeats
        node.heartbeat("draining")
        node.control.expect(p.HEARTBEAT)
    assert node.control.take(p.DRAIN) is None


def test_bye_ends_the_drain(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    assert producer.request(p.DRAIN, {"node_id": node.node_id}).command == p.STATS
    node.control.expect(p.DRAIN)
    node.control.send(p.BYE, {"node_id": node.node_id, "reason": "drained"})
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["state"] == "offline", 5, "offline")
    node.reconnect()
    node.hello()
    node.ready()
    task = producer.submit("cv2").header["task"]
    assert node.expect_task().header["task_id"] == task["id"]
    assert node.control.take(p.DRAIN) is None


# ---------------------------------------------------------------------------------------------- retries
def _instant_retries() -> dict[str, RetryConfig]:
    """No backoff: without the preference, the retry would go back to the failed node in the very
    round that handled its FAILED (that node is the only one holding credit)."""
    return {kind: RetryConfig(max_attempts=3, backoff_base_s=0.0, backoff_max_s=0.0) for kind in ("inpaint", "plugin")}


def test_a_retryable_failure_is_retried_on_another_node_even_if_the_first_is_idle_first(scheduler_factory, peers):
    sched = scheduler_factory(retry=_instant_retries())
    producer = watching_producer(peers, sched)
    a = ready_node(peers, sched, name="node-a")
    b = peers("node", sched, name="node-b")
    b.hello()  # online, capable, but no credit yet
    task = producer.submit("cv2").header["task"]
    first = a.expect_task()
    a.failed(first, retryable=True, error="CUDA out of memory")  # also a's next credit
    producer.expect(p.EVENT, lambda m: m.header["task_id"] == task["id"] and m.header["status"] == "queued"
                    and m.header["attempts"] == 1)  # fmt: skip
    b.ready()
    retry = b.expect_task()
    assert (retry.header["task_id"], retry.header["attempt"]) == (task["id"], 2)
    assert a.take_task() is None
    b.result(retry)
    wait_for(lambda: producer.status(task["id"]) == "completed", 5, "the retry to complete on node-b")


def test_the_failed_node_takes_younger_work_while_the_retry_waits_for_the_busy_one(scheduler_factory, peers):
    sched = scheduler_factory(retry=_instant_retries())
    producer = watching_producer(peers, sched)
    a = ready_node(peers, sched, name="node-a")
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["credit"], 5, "node-a's credit")
    b = ready_node(peers, sched, name="node-b")
    t1 = producer.submit("cv2").header["task"]
    on_a = a.expect_task()  # least recently used
    t2 = producer.submit("cv2").header["task"]
    on_b = b.expect_task()
    assert (on_a.header["task_id"], on_b.header["task_id"]) == (t1["id"], t2["id"])
    a.failed(on_a, retryable=True)
    t3 = producer.submit("cv2").header["task"]
    # a is the only idle node: it gets the younger t3, while t1's retry waits for b.
    assert a.expect_task().header["task_id"] == t3["id"]
    b.result(on_b)
    retry = b.expect_task()
    assert (retry.header["task_id"], retry.header["attempt"]) == (t1["id"], 2)


def test_a_retry_still_runs_on_the_node_it_failed_on_when_no_other_can(scheduler_factory, peers):
    sched = scheduler_factory(retry=_instant_retries())
    producer = peers("producer", sched)
    a = ready_node(peers, sched)
    peers("node", sched, device="cpu", models=["lama"]).hello()  # online, but cannot run cv2
    task = producer.submit("cv2").header["task"]
    a.failed(a.expect_task(), retryable=True)
    retry = a.expect_task()
    assert (retry.header["task_id"], retry.header["attempt"]) == (task["id"], 2)
