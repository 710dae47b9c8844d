"""SUBMIT ``want_result``: the scheduler pushes DONE (with the result) to the submitting producer,
so a classic /inpaint needs no FETCH round trip; and ``ready: false`` outcomes grant no credit."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import (
    dispatch,
    expect_completed_event,
    ready_node,
    run_task,
    wait_completed,
    watching_producer,
)
from tests.support.waiting import wait_for


def _done_for(task_id: str):
    return lambda m: m.header["task_id"] == task_id


def test_done_carries_the_result_before_the_completed_event(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = watching_producer(peers, sched)
    node = ready_node(peers, sched)
    task = run_task(producer, node, "cv2", want_result=True, body=b"PNG-OUT")

    event = expect_completed_event(producer, task["id"])
    done = producer.take(p.DONE, _done_for(task["id"]))
    assert done is not None, "DONE must arrive before the task's completed EVENT"
    assert "req_id" not in done.header  # never mistaken for the reply to a request
    assert done.header["status"] == "completed"
    assert done.header["mimetype"] == "image/png" and done.header["headers"] == {"X-Seed": "42"}
    assert done.blob_map() == {"body": b"PNG-OUT"}
    assert event.header["status"] == "completed"
    assert producer.take(p.DONE) is None  # exactly one
    assert sched.stats()["done_sent"] == 1
    # FETCH still works as before.
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"PNG-OUT"}


def test_without_want_result_no_done_is_sent(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = watching_producer(peers, sched)
    node = ready_node(peers, sched)
    task = run_task(producer, node, "cv2")
    expect_completed_event(producer, task["id"])
    assert producer.take(p.DONE) is None
    assert sched.stats()["done_sent"] == 0


def test_done_for_failed_and_cancelled_tasks_has_the_error_and_no_blob(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    bad = producer.submit("cv2", want_result=True).header["task"]
    node.failed(node.expect_task(), retryable=False, error="Mask shape mismatch", status=400)
    failed = producer.expect(p.DONE, _done_for(bad["id"]))
    assert failed.header["status"] == "failed" and failed.blobs == []
    assert failed.header["error"] == "Mask shape mismatch" and failed.header["error_status"] == 400
    assert failed.header["traceback"] == "Traceback..."

    node.ready()
    queued = producer.submit("lama", want_result=True).header["task"]  # gpu queue: no node can run it
    info = producer.request(p.CANCEL, {"task_id": queued["id"]}).header["task"]
    assert info["status"] == "cancelled"
    cancelled = producer.expect(p.DONE, _done_for(queued["id"]))
    assert cancelled.header["status"] == "cancelled" and cancelled.blobs == []
    assert cancelled.header["error"] == "Task was cancelled"


def test_resubmitting_a_finished_task_with_want_result_gets_done_at_once(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task = run_task(producer, node, "cv2", key="stroke-9", body=b"first")
    wait_completed(producer, task["id"])

    again = producer.submit("cv2", key="stroke-9", want_result=True)
    assert again.header["existing"] is True and again.header["task"]["id"] == task["id"]
    done = producer.expect(p.DONE, _done_for(task["id"]))
    assert done.header["status"] == "completed" and done.blob_map() == {"body": b"first"}


def test_a_submitter_that_went_away_breaks_nothing(scheduler_factory, peers):
    sched = scheduler_factory()
    gone = peers("producer", sched)
    task = gone.submit("cv2", want_result=True).header["task"]
    gone.close()
    node = ready_node(peers, sched)
    node.result(node.expect_task(), body=b"kept")
    other = peers("producer", sched)
    wait_completed(other, task["id"])
    assert other.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"kept"}
    stats = sched.stats()
    assert stats["done_sent"] + stats["undelivered"] == 1  # tried once, wherever it went
    assert other.take(p.DONE) is None  # never sent to anyone else
    assert sched.running


@pytest.mark.parametrize("outcome", ["cancelled", "failed"])
def test_outcome_with_ready_false_grants_no_credit(scheduler_factory, peers, outcome):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    first, running = dispatch(producer, node, "cv2")
    waiting = producer.submit("cv2").header["task"]
    if outcome == "cancelled":
        producer.request(p.CANCEL, {"task_id": first["id"]})
        node.control.expect(p.CANCEL)
        node.cancelled(running, ready=False)  # e.g. its inference process is being restarted
    else:
        node.failed(running, retryable=False, ready=False)

    def node_state() -> dict:
        return producer.request(p.NODES, {}).header["nodes"][0]

    # Dispatch runs in the round that handled the outcome: had it been a credit, the waiting task
    # would be on the node by the time the node shows up idle.
    wait_for(lambda: node_state()["state"] == "idle", message="node free of its task")
    assert node_state()["credit"] == []
    assert producer.status(waiting["id"]) == "queued"
    assert node.take_task() is None
    node.ready()  # it can work again
    assert node.expect_task().header["task_id"] == waiting["id"]


def test_a_progress_event_sent_with_the_result_reaches_the_producer_before_the_done(scheduler_factory, peers):
    """A node's last PROGRESS and its RESULT often land in one scheduler round. The producer must get
    that step's event before the DONE that wakes the waiting /inpaint, or ``diffusion_finish`` (sent
    when /inpaint returns) overtakes the last ``diffusion_progress``."""
    sched = scheduler_factory()
    producer = watching_producer(peers, sched)
    node = ready_node(peers, sched)
    for _ in range(5):  # several tasks: each pair has every chance to share a round
        task, sent = dispatch(producer, node, "cv2", want_result=True)
        progress = {"node_id": node.node_id, "task_id": task["id"], "attempt": sent.header["attempt"],
                    "percent": 100.0, "step": 2, "total_steps": 3}  # fmt: skip
        node.control.send(p.PROGRESS, progress)
        node.result(sent, body=b"PNG-OUT")
        expect_completed_event(producer, task["id"])
        mine = [m for m in producer.inbox if m.header.get("task_id") == task["id"]]
        order = [m.command if m.command == p.DONE else m.header["status"] + str(m.header.get("step")) for m in mine]
        assert p.DONE in order, order
        assert "processing2" in order[: order.index(p.DONE)], f"the step-2 event must come before the DONE: {order}"
        producer.inbox.clear()
        node.ready()
