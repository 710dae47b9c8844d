"""A real scheduler thread driven through real ZeroMQ sockets by scripted nodes and producers."""

from __future__ import annotations

import json
import os

import pytest
import zmq

from lama_cleaner.plugins.distributed.journal.task_store import TaskStore
from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import (
    dispatch,
    make_config,
    ready_node,
    resource_class_of,
    run_task,
    wait_completed,
    watching_producer,
)
from tests.support.waiting import wait_for


def test_submit_ready_task_result_fetch(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = watching_producer(peers, sched)  # WATCH is answered with PONG (req_id echoed)
    producer.send(p.PING, {})
    assert producer.expect(p.PONG).header == {}
    node = peers("node", sched)
    welcome = node.hello()
    assert set(welcome.header["queues"]) == {"cpu"}
    assert "gpu" in welcome.header["rejected"]

    accepted = producer.submit("cv2")
    assert accepted.command == p.ACCEPTED
    task = accepted.header["task"]
    assert task["status"] == "queued" and task["queue"] == "cpu" and task["position"] == 0

    node.ready()
    sent = node.expect_task()
    assert sent.header["task_id"] == task["id"]
    assert sent.header["attempt"] == 1
    assert sent.header["form"] == {"ldmSteps": "20"}
    assert sent.blob_map() == {"image": b"\x89PNG-image", "mask": b"\x89PNG-mask"}
    wait_for(lambda: producer.status(task["id"]) == "processing", message="processing")

    node.control.send(p.PROGRESS, {"node_id": node.node_id, "task_id": task["id"], "attempt": 1, "percent": 50.0,
                                   "step": 3, "total_steps": 6})  # fmt: skip
    producer.expect(p.EVENT, lambda m: m.header["task_id"] == task["id"] and m.header.get("step") == 3)
    node.result(sent, body=b"PNG-OUT")
    wait_completed(producer, task["id"])

    out = producer.request(p.FETCH, {"task_id": task["id"]})
    assert out.command == p.OUTPUT
    assert out.header["mimetype"] == "image/png" and out.header["headers"] == {"X-Seed": "42"}
    assert out.blob_map() == {"body": b"PNG-OUT"}
    statuses = []
    while (ev := producer.take(p.EVENT, lambda m: m.header["task_id"] == task["id"])) is not None:
        statuses.append(ev.header["status"])
    assert statuses[0] == "queued" and statuses[-1] == "completed" and "processing" in statuses
    stats = sched.stats()
    assert stats["dispatched"] == 1 and stats["completed"] == 1
    wait_for(lambda: sched.stats()["tasks"]["completed"] == 1, message="stats snapshot")


def test_credit_one_busy_node_never_gets_second_task(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    busy = ready_node(peers, sched)
    first, got = dispatch(producer, busy, "cv2")
    assert got.header["task_id"] == first["id"]
    # A stale second READY (sent before it saw the TASK) must not be taken as credit.
    busy.ready()
    second = producer.submit("cv2").header["task"]
    idle = ready_node(peers, sched)
    got2 = idle.expect_task()
    assert got2.header["task_id"] == second["id"]
    third = producer.submit("cv2").header["task"]
    assert producer.get(third["id"])["status"] == "queued"
    assert busy.take_task() is None and idle.take_task() is None
    # The busy node finishes: its RESULT doubles as credit, so the waiting task goes to it.
    busy.result(got)
    got3 = busy.expect_task()
    assert got3.header["task_id"] == third["id"]
    assert idle.take_task() is None


def test_cpu_node_refused_gpu_queue_and_never_gets_gpu_work(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    cpu = peers("node", sched, queues=["gpu", "cpu"])
    welcome = cpu.hello()
    assert list(welcome.header["queues"]) == ["cpu"]
    assert "CUDA" in welcome.header["rejected"]["gpu"]
    cpu.ready()
    gpu_task = producer.submit("lama").header["task"]
    assert gpu_task["queue"] == "gpu"
    cpu_task, got = dispatch(producer, cpu, "cv2")
    assert got.header["task_id"] == cpu_task["id"]
    cpu.result(got)
    wait_completed(producer, cpu_task["id"], "cpu task done")
    assert cpu.take_task() is None
    assert producer.status(gpu_task["id"]) == "queued"
    gpu = peers("node", sched, device="cuda")
    assert set(gpu.hello().header["queues"]) == {"gpu", "cpu"}
    gpu.ready()
    assert gpu.expect_task().header["task_id"] == gpu_task["id"]


def test_queue_full_is_rejected_503(scheduler_factory, peers):
    sched = scheduler_factory(max_queued=10, max_queued_per_queue=2, retry_after_s=7)
    producer = peers("producer", sched)
    assert producer.submit("cv2").command == p.ACCEPTED
    assert producer.submit("cv2").command == p.ACCEPTED
    rejected = producer.submit("cv2")
    assert rejected.command == p.REJECTED
    assert rejected.header["status"] == 503 and rejected.header["retry_after"] == 7
    assert rejected.header["code"] == "overloaded"
    # Another queue still has room.
    assert producer.submit("lama").command == p.ACCEPTED
    assert sched.stats()["rejected_overloaded"] == 1


def test_unknown_model_and_bad_kind_are_400(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    unknown = producer.submit("no-such-model")
    assert unknown.command == p.REJECTED and unknown.header["status"] == 400
    assert "no-such-model" in unknown.header["message"]
    bad = producer.submit("cv2", kind="explode")
    assert bad.command == p.REJECTED and bad.header["status"] == 400


def test_idempotency_key_returns_existing_task(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    first = producer.submit("cv2", key="stroke-1").header["task"]
    again = producer.submit("cv2", key="stroke-1")
    assert again.command == p.ACCEPTED and again.header["task"]["id"] == first["id"]
    listed = producer.request(p.LIST, {"status": None, "limit": 10, "offset": 0})
    assert listed.header["total"] == 1


def test_garbage_frames_are_counted_and_dropped(scheduler_factory, peers, zctx):
    sched = scheduler_factory()
    junk = peers("producer", sched)
    junk.send_raw([os.urandom(17)])
    junk.send_raw([b"LC2", b"HELLO", b"{}"])
    junk.send_raw([b"LC1", b"SUBMIT", b"{not json"])
    junk.send_raw([b"LC1", b"FROB", b"{}"])
    junk.send_raw([b"LC1", b"SUBMIT", json.dumps({"req_id": "x", "task": {}, "blobs": ["a", "b"]}).encode(), b"1"])
    junk.send_raw([b"LC1", b"READY", b"{}"])
    junk.send_raw([b"LC1", b"\xff\xfe", b"{}", b"", b""])
    version_error = junk.expect(p.ERROR)
    assert version_error.header["code"] == "version"
    wrong_blobs = junk.expect(p.REJECTED, lambda m: m.header["req_id"] == "x")
    assert wrong_blobs.header["status"] == 400
    wait_for(lambda: sched.stats()["garbage_frames"] >= 7, message="garbage counted")
    # Garbage on a queue socket too.
    raw = zctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(sched.endpoints["queues"]["cpu"])
    raw.send_multipart([b"LC1", b"SUBMIT", b"{}"])
    raw.send_multipart([b"\x00" * 3])
    wait_for(lambda: sched.stats()["garbage_frames"] >= 9, message="queue garbage counted")
    raw.close()
    # ...and it still works.
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task = run_task(producer, node, "cv2")
    wait_completed(producer, task["id"], "completed after garbage")
    assert sched.running


def test_heartbeat_loss_requeues_to_another_node(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    doomed = ready_node(peers, sched)
    task, first = dispatch(producer, doomed, "cv2")
    assert first.header["attempt"] == 1
    # The doomed node now goes silent. A healthy node keeps heartbeating and waits for work.
    doomed.silent = True
    healthy = ready_node(peers, sched)
    retried = healthy.expect_task(timeout=10)
    assert retried.header["task_id"] == task["id"]
    assert retried.header["attempt"] == 2
    info = producer.get(task["id"])
    assert info["attempts"] == 2 and info["node"] == healthy.node_id
    assert sched.stats()["requeued_on_node_loss"] == 1
    nodes = producer.request(p.NODES, {}).header["nodes"]
    assert {n["id"]: n["state"] for n in nodes}[doomed.node_id] == "offline"
    # The lost node comes back: the scheduler no longer knows it and tells it so.
    doomed.silent = False
    doomed.heartbeat()
    doomed.control.expect(p.UNKNOWN)
    healthy.result(retried)
    wait_completed(producer, task["id"])


def test_duplicate_result_is_discarded_and_counted(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task, sent = dispatch(producer, node, "cv2")
    node.result(sent, body=b"first")
    node.result(sent, body=b"second")
    wait_for(lambda: sched.stats()["duplicates"] == 1, message="duplicate counted")
    out = producer.request(p.FETCH, {"task_id": task["id"]})
    assert out.blob_map() == {"body": b"first"}
    assert sched.stats()["completed"] == 1


def test_retryable_failure_backs_off_then_client_error_fails_at_once(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    task, first = dispatch(producer, node, "cv2")
    node.failed(first, retryable=True, error="CUDA out of memory")
    second = node.expect_task()
    assert second.header["attempt"] == 2
    node.failed(second, retryable=True)
    third = node.expect_task()
    node.failed(third, retryable=True, error="still broken")
    wait_for(lambda: producer.status(task["id"]) == "failed", message="failed after 3 attempts")
    rejected = producer.request(p.FETCH, {"task_id": task["id"]})
    assert rejected.command == p.REJECTED and rejected.header["status"] == 500
    assert "still broken" in rejected.header["message"] and rejected.header["traceback"] == "Traceback..."

    bad = producer.submit("cv2").header["task"]
    node.failed(node.expect_task(), retryable=False, error="Mask shape mismatch", status=400)
    wait_for(lambda: producer.status(bad["id"]) == "failed", message="client error fails at once")
    assert producer.get(bad["id"])["attempts"] == 1


def test_cancel_queued_and_running(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    queued = producer.submit("cv2").header["task"]
    info = producer.request(p.CANCEL, {"task_id": queued["id"]}).header["task"]
    assert info["status"] == "cancelled"
    node = ready_node(peers, sched)
    running, sent = dispatch(producer, node, "cv2")
    assert sent.header["task_id"] == running["id"]  # the cancelled one was never dispatched
    info = producer.request(p.CANCEL, {"task_id": running["id"]}).header["task"]
    assert info["status"] == "cancelled"
    cancel = node.control.expect(p.CANCEL)
    assert cancel.header == {"task_id": running["id"], "attempt": 1}
    node.result(sent)  # too late: a duplicate for the client
    wait_for(lambda: sched.stats()["duplicates"] == 1, message="late result discarded")
    assert producer.status(running["id"]) == "cancelled"
    gone = producer.request(p.FETCH, {"task_id": running["id"]})
    assert gone.header["status"] == 409 and gone.header["code"] == "cancelled"
    missing = producer.request(p.GET, {"task_id": "nope"})
    assert missing.command == p.REJECTED and missing.header["status"] == 404


def test_affinity_prefers_node_with_model_loaded(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    cold = peers("node", sched)
    warm = peers("node", sched)
    cold.hello()
    warm.hello()
    warm.ready()
    first, ran = dispatch(producer, warm, "fake")
    cold.ready()  # cold is now idle for longer than warm will be: least-recently-used picks cold...
    warm.result(ran)

    def both_have_credit():
        nodes = producer.request(p.NODES, {}).header["nodes"]
        return all(n["credit"] == ["cpu"] for n in nodes) and len(nodes) == 2

    wait_for(both_have_credit, message="both nodes idle with credit")
    assert producer.status(first["id"]) == "completed"
    task = producer.submit("fake").header["task"]
    got = warm.expect_task()  # ...but the warm node has "fake" loaded: affinity wins
    assert got.header["task_id"] == task["id"]
    assert cold.take_task() is None
    other = producer.submit("cv2").header["task"]
    assert cold.expect_task().header["task_id"] == other["id"]


def test_drain_stops_credit(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    node = ready_node(peers, sched)
    sched.drain_node(node.node_id)
    node.control.expect(p.DRAIN)
    task = producer.submit("cv2").header["task"]
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["state"] == "draining", message="draining")
    node.ready()
    node.heartbeat()
    assert producer.status(task["id"]) == "queued"
    assert node.take_task() is None
    queues = {q["name"]: q for q in producer.request(p.QUEUES, {}).header["queues"]}
    assert queues["cpu"]["queued"] == 1 and queues["cpu"]["nodes"]["draining"] == 1


def test_older_attempt_result_wins_and_newer_attempt_is_cancelled(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    slow = ready_node(peers, sched)
    task, first = dispatch(producer, slow, "cv2")
    slow.silent = True  # declared lost while it still works on attempt 1
    other = ready_node(peers, sched)
    second = other.expect_task(timeout=10)
    assert second.header["attempt"] == 2
    slow.silent = False
    slow.result(first, body=b"from-attempt-1")  # the "dead" node finishes after all
    slow.control.expect(p.UNKNOWN)  # ...and is told to register again
    cancel = other.control.expect(p.CANCEL)
    assert cancel.header == {"task_id": task["id"], "attempt": 2}
    out = producer.request(p.FETCH, {"task_id": task["id"]})
    assert out.blob_map() == {"body": b"from-attempt-1"}
    other.result(second, body=b"from-attempt-2")
    wait_for(lambda: sched.stats()["duplicates"] == 1, message="second result discarded")
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blob_map() == {"body": b"from-attempt-1"}


def test_positions_and_retention_expiry(scheduler_factory, peers):
    sched = scheduler_factory(retention_s=0.5)
    producer = peers("producer", sched)
    first = producer.submit("cv2").header["task"]
    second = producer.submit("cv2").header["task"]
    assert (first["position"], second["position"]) == (0, 1)
    node = ready_node(peers, sched)
    sent = node.expect_task()
    assert producer.get(second["id"])["position"] == 0  # the first one left the line
    node.result(sent)
    wait_completed(producer, first["id"])

    def expired():
        reply = producer.request(p.GET, {"task_id": first["id"]})
        return reply.command == p.REJECTED and reply.header["status"] == 410

    wait_for(expired, timeout=10, message="finished task pruned by retention")
    assert sched.stats()["pruned_tasks"] >= 1
    fetch = producer.request(p.FETCH, {"task_id": first["id"]})
    assert fetch.header["status"] == 410 and fetch.header["code"] == "expired"


def test_a_failing_handler_answers_500_and_the_loop_goes_on(tmp_path, peers):
    def flaky(kind: str, name: str) -> str | None:
        if name == "explode":
            raise RuntimeError("registry is broken")
        return resource_class_of(kind, name)

    sched = Scheduler(make_config(tmp_path), flaky).start()
    try:
        producer = peers("producer", sched)
        reply = producer.submit("explode")
        assert reply.command == p.REJECTED and reply.header["status"] == 500
        assert "registry is broken" in reply.header["message"]
        assert sched.stats()["handler_errors"] == 1
        assert producer.submit("cv2").command == p.ACCEPTED
        assert producer.request(p.LIST, {"status": None, "limit": 5, "offset": 0}).header["total"] == 1
    finally:
        sched.stop()
        assert sched.join(10)


def test_second_scheduler_on_same_journal_is_refused(tmp_path, scheduler_factory):
    scheduler_factory()
    other = Scheduler(make_config(tmp_path), resource_class_of)
    with pytest.raises(RuntimeError, match="another scheduler"):
        other.start()
    assert not other.running


def test_start_fails_tasks_of_a_queue_no_longer_configured(tmp_path, scheduler_factory, peers):
    journal = tmp_path / "data" / "journal.sqlite3"
    with TaskStore(journal) as store:
        gone = store.create_task(kind="inpaint", name="cv2", queue="old-queue", max_attempts=3)[0]
        kept = store.create_task(kind="inpaint", name="cv2", queue="cpu", max_attempts=3)[0]
    sched = scheduler_factory()
    producer = peers("producer", sched)
    info = producer.get(gone.id)
    assert info["status"] == "failed" and "old-queue" in info["error"]
    assert producer.get(kept.id)["status"] == "queued"


def test_a_failing_journal_commit_drops_the_round_not_the_scheduler(scheduler_factory, peers):
    sched = scheduler_factory()
    producer = peers("producer", sched)
    store = sched.store
    real_batch = store.batch
    failures = {"left": 3}

    def flaky_batch():
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError("disk full")
        return real_batch()

    store.batch = flaky_batch  # the loop thread picks it up on its next round
    wait_for(lambda: failures["left"] == 0, message="failing rounds")
    assert sched.stats()["journal_errors"] == 3
    assert sched.running
    assert producer.submit("cv2").command == p.ACCEPTED
