"""Image-sized inputs and results travel through the journal's blob files, byte for byte, across a
restart; a task whose input file was lost fails with a clear error instead of being dispatched; a
TASK leaves before its upload is written, and a failed write loses nothing and delivers nothing twice."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from lama_cleaner.plugins.distributed.journal import blob_files
from lama_cleaner.plugins.distributed.journal.task_store import sha256_of
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, ScriptedNode
from tests.support.waiting import wait_for

IMAGE = os.urandom(300_000)
MASK = b"\x89PNG-small-mask"
RESULT = os.urandom(250_000)


def blob_path(sched, data: bytes) -> Path:
    digest = sha256_of(data)
    return Path(sched.data_dir) / "blobs" / digest[:2] / digest


def submit(producer: Producer, *, want_result: bool = False) -> str:
    header = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": None}}
    if want_result:
        header["want_result"] = True
    reply = producer.request(p.SUBMIT, header, {"image": IMAGE, "mask": MASK})
    assert reply.command == p.ACCEPTED
    return reply.header["task"]["id"]


def failing_writes(monkeypatch) -> dict[str, int]:
    """Make blob writes fail as on a full disk while the returned ``left`` count lasts (0 at first)."""
    real_write = blob_files.BlobFiles.write
    fail = {"left": 0}

    def disk_full(files, digest, data):
        if fail["left"]:
            fail["left"] -= 1
            raise OSError(28, "No space left on device")
        real_write(files, digest, data)

    monkeypatch.setattr(blob_files.BlobFiles, "write", disk_full)
    return fail


def test_big_input_and_result_go_through_files_byte_for_byte(scheduler_factory, peers):
    sched = scheduler_factory()
    producer: Producer = peers("producer", sched)
    task_id = submit(producer, want_result=True)
    assert blob_path(sched, IMAGE).read_bytes() == IMAGE  # on disk before ACCEPTED was sent
    node: ScriptedNode = peers("node", sched)
    node.hello()
    node.ready()
    task = node.expect_task()
    assert task.blob_map() == {"image": IMAGE, "mask": MASK}
    node.result(task, body=RESULT)
    done = producer.expect(p.DONE)
    assert done.header["status"] == "completed" and done.blob_map() == {"body": RESULT}
    # A result is stored under the random key its task row names, not under its hash.
    assert not blob_path(sched, RESULT).exists()
    journal = sqlite3.connect(Path(sched.data_dir) / "journal.sqlite3")
    (key,) = journal.execute("SELECT result_sha256 FROM tasks WHERE id = ?", (task_id,)).fetchone()
    journal.close()
    assert (Path(sched.data_dir) / "blobs" / key[:2] / key).read_bytes() == RESULT
    fetched = producer.request(p.FETCH, {"task_id": task_id})
    assert fetched.command == p.OUTPUT and fetched.blob_map() == {"body": RESULT}


def test_queued_file_inputs_survive_a_restart(scheduler_factory, peers, tmp_path):
    first = scheduler_factory()
    producer: Producer = peers("producer", first)
    task_id = submit(producer)
    first.stop()
    assert first.join(10)
    second = scheduler_factory()
    node: ScriptedNode = peers("node", second)
    node.hello()
    node.ready()
    task = node.expect_task()
    assert task.header["task_id"] == task_id and task.blob_map() == {"image": IMAGE, "mask": MASK}


def test_a_task_whose_input_file_was_lost_fails_and_the_node_gets_the_next_one(scheduler_factory, peers):
    sched = scheduler_factory()
    producer: Producer = peers("producer", sched)
    lost = submit(producer)
    blob_path(sched, IMAGE).unlink()  # e.g. a power cut under synchronous=NORMAL
    header = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": None}}
    other = producer.request(p.SUBMIT, header, {"image": b"small", "mask": MASK}).header["task"]["id"]
    node: ScriptedNode = peers("node", sched)
    node.hello()
    node.ready()
    task = node.expect_task()
    assert task.header["task_id"] == other
    info = wait_for(lambda: (t := producer.get(lost))["status"] == "failed" and t, message="lost task failed")
    assert "Task input lost" in info["error"] and "'image'" in info["error"]


def test_the_task_leaves_before_its_upload_is_written_and_the_accepted_after(scheduler_factory, peers, monkeypatch):
    """A TASK is sent before the round's commit, which writes the upload's file while the node starts;
    the ACCEPTED (an answer the producer relies on) still waits until the file and row are committed."""
    writing = threading.Event()
    release = threading.Event()
    real_write = blob_files.BlobFiles.write

    def slow_write(files, digest, data):
        writing.set()
        assert release.wait(10), "the test never released the write"
        real_write(files, digest, data)

    sched = scheduler_factory()
    node: ScriptedNode = peers("node", sched)
    node.hello()
    node.ready()
    producer: Producer = peers("producer", sched)
    monkeypatch.setattr(blob_files.BlobFiles, "write", slow_write)
    header = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": None}}
    producer.send(p.SUBMIT, {"req_id": "early", **header}, {"image": IMAGE, "mask": MASK})
    try:
        assert writing.wait(5)
        task = node.expect_task()  # while the upload's write is still blocked
        assert task.blob_map() == {"image": IMAGE, "mask": MASK}
        assert not blob_path(sched, IMAGE).exists()
        producer.pump()
        assert not any(m.header.get("req_id") == "early" for m in producer.inbox)  # no ACCEPTED yet
    finally:
        release.set()
    accepted = producer.expect(p.ACCEPTED, lambda m: m.header.get("req_id") == "early")
    assert accepted.header["task"]["id"] == task.header["task_id"]
    assert blob_path(sched, IMAGE).read_bytes() == IMAGE


def test_a_round_whose_upload_cannot_be_written_loses_nothing_and_delivers_nothing_twice(
    scheduler_factory, peers, monkeypatch
):
    """The disk fills while an upload is written: its TASK already left, but the round is rolled back
    (no ACCEPTED, no task) and the producer is told why at once; that node's RESULT for the attempt
    the journal never recorded is dropped, and the producer's re-sent SUBMIT (same idempotency key)
    runs once, to completion."""
    sched = scheduler_factory()
    node: ScriptedNode = peers("node", sched)
    node.hello()
    node.ready()
    producer: Producer = peers("producer", sched)
    # The TASK leaves in the SUBMIT's round only if the node's READY was handled in an earlier one.
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["credit"], message="the node's credit")
    failing_writes(monkeypatch)["left"] = 1
    header = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": "k1"}}
    producer.send(p.SUBMIT, {"req_id": "lost", **header}, {"image": IMAGE, "mask": MASK})
    ghost = node.expect_task()
    wait_for(lambda: sched.stats()["journal_errors"] == 1, message="the failed round")
    refused = producer.expect(p.REJECTED, lambda m: m.header.get("req_id") == "lost")
    assert refused.header["status"] == 503 and refused.header["code"] == "journal_unavailable"
    assert "No space left on device" in refused.header["message"] and refused.header["retry_after"] >= 1
    gone = producer.request(p.GET, {"task_id": ghost.header["task_id"]})
    assert gone.command == p.REJECTED and gone.header["status"] == 404
    assert not any(m.command == p.ACCEPTED for m in producer.inbox)  # never ACCEPTED
    stale = sched.stats()["stale_messages"]
    node.result(ghost, body=RESULT)  # the work done for the unrecorded attempt is dropped
    wait_for(lambda: sched.stats()["stale_messages"] == stale + 1, message="the dropped RESULT")
    # The producer re-sends; the node reports again to get credit back.
    retry = producer.request(p.SUBMIT, header, {"image": IMAGE, "mask": MASK})
    assert retry.command == p.ACCEPTED
    task_id = retry.header["task"]["id"]
    node.heartbeat()
    node.ready()
    task = node.expect_task()
    assert task.header["task_id"] == task_id != ghost.header["task_id"]
    node.result(task, body=RESULT)
    wait_for(lambda: producer.get(task_id)["status"] == "completed", message="the re-sent task completed")
    fetched = producer.request(p.FETCH, {"task_id": task_id})
    assert fetched.command == p.OUTPUT and fetched.blob_map() == {"body": RESULT}
    assert sched.stats()["completed"] == 1


def test_a_result_the_journal_could_not_save_runs_again_instead_of_staying_processing(
    scheduler_factory, peers, monkeypatch
):
    """The disk fills while a RESULT's file is written: the round is rolled back, so the journal still
    says the task runs on the node while the node (and the scheduler's registry) are done with it.
    The scheduler notices the task no node holds and queues it again, uncharged (the loss was the
    journal's); its second run completes and the producer gets one DONE."""
    fail = failing_writes(monkeypatch)
    sched = scheduler_factory()
    producer: Producer = peers("producer", sched)
    task_id = submit(producer, want_result=True)
    node: ScriptedNode = peers("node", sched)
    node.hello()
    node.ready()
    first = node.expect_task()
    fail["left"] = 1
    node.result(first, body=RESULT)
    wait_for(lambda: sched.stats()["journal_errors"] == 1, message="the failed round")
    second = node.expect_task(timeout=30)  # the node is idle in the registry: it gets the task again
    assert second.header["task_id"] == task_id and second.header["attempt"] > first.header["attempt"]
    node.result(second, body=RESULT)
    done = producer.expect(p.DONE)
    assert done.header["status"] == "completed" and done.blob_map() == {"body": RESULT}
    info = producer.get(task_id)
    assert info["status"] == "completed" and info["attempts"] == 1, info
    assert not any(m.command == p.DONE for m in producer.inbox if m is not done)
