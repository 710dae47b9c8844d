"""Image-sized inputs and results travel through the journal's blob files, byte for byte, across a
restart; a task whose input file was lost fails with a clear error instead of being dispatched."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

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
