"""Shared memory between nodes and a scheduler on one host (protocol minor 4), with every part real:
``lama-cleaner scheduler`` and ``lama-cleaner node`` subprocesses, their inference children, memfd
regions mapped across the processes, and faults provoked for real (SIGKILL of a node mid-task, a
scheduler killed and started again while a node runs a task it was given by reference).

Every result is checked pixel by pixel against its own upload (the ``sleep`` test model returns the
image unchanged), so a slot read or written for the wrong task, or a stale area, cannot go unseen.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import zmq

from lama_cleaner.plugins.distributed.wire import protocol as p
from lama_cleaner.plugins.distributed.wire.shared_memory import supported
from tests.integration.scheduler.peers import Producer

from .conftest import FAKE_PLUGIN, Proc, free_port_block, mask_png, png, start_node, task_form, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not supported(), reason="needs memfd_create and /proc (Linux)")]

SHARES = "shares memory with the scheduler"
BY_REFERENCE = "(result in shared memory)"


def _scheduler(procs: list[Proc], port: int, data: Path, config: Path) -> Proc:
    argv = ["scheduler", "--bind", f"tcp://127.0.0.1:{port}", "--data-dir", str(data), "--config", str(config),
            "--plugins", FAKE_PLUGIN]  # fmt: skip
    sched = Proc(argv)
    procs.append(sched)
    wait_for(lambda: "scheduler ready" in sched.output(), 60, "the scheduler to listen")
    return sched


def _credit(producer: Producer, name: str) -> bool:
    return any(n["name"] == name and n["credit"] for n in producer.request(p.NODES, {}).header["nodes"])


def _submit(producer: Producer, image: bytes, ms: int | None = None) -> str:
    """A ``sleep`` task of ``ms`` (None: as long as the node's ``LAMA_TEST_SLEEP_MS`` says)."""
    prompt = "" if ms is None else str(ms)
    task = {"kind": "inpaint", "name": "sleep", "form": task_form(prompt), "submitter": None, "idempotency_key": None}
    reply = producer.request(p.SUBMIT, {"task": task}, {"image": image, "mask": mask_png(320, 240)})
    assert reply.command == p.ACCEPTED, reply.header
    return reply.header["task"]["id"]


def _completed(producer: Producer, task_id: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (t := producer.get(task_id))["status"] == "completed" and t, timeout, "completion")


def _pixels(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _same_pixels(producer: Producer, task_id: str, image: bytes) -> None:
    out = producer.request(p.FETCH, {"task_id": task_id}, timeout=10)
    assert out.command == p.OUTPUT, out.header
    assert np.array_equal(_pixels(out.blob_map()["body"]), _pixels(image)), f"task {task_id} got another image"


@pytest.fixture
def producer_for():
    ctx = zmq.Context()
    made: list[Producer] = []

    def make(port: int) -> Producer:
        producer = Producer(ctx, SimpleNamespace(control_endpoint=f"tcp://127.0.0.1:{port}"))
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.close()
    ctx.destroy(linger=0)


def test_a_pipelined_node_gets_every_task_through_shared_memory_and_returns_each_its_own_image(
    tmp_path: Path, procs: list[Proc], tmp_config: Path, producer_for
):
    port = free_port_block(3)
    sched = _scheduler(procs, port, tmp_path / "data", tmp_config)
    producer = producer_for(port)
    node = start_node(procs, f"tcp://127.0.0.1:{port}", tmp_config, "--name", "deep", "--pipeline-depth", "2")
    wait_for(lambda: _credit(producer, "deep"), 60, "the node to offer credit")
    assert SHARES in sched.output()
    images = [png(320, 240, seed=i) for i in range(6)]
    tasks = [_submit(producer, image, 150) for image in images]
    for task_id, image in zip(tasks, images, strict=True):
        _completed(producer, task_id)
        _same_pixels(producer, task_id, image)
    wait_for(lambda: node.output().count(BY_REFERENCE) == 6, 10, "every result to have gone by reference")


def test_a_node_killed_mid_task_loses_nothing_and_the_retry_returns_the_right_image(
    tmp_path: Path, procs: list[Proc], tmp_config: Path, producer_for
):
    port = free_port_block(3)
    sched = _scheduler(procs, port, tmp_path / "data", tmp_config)
    producer = producer_for(port)
    endpoint = f"tcp://127.0.0.1:{port}"
    doomed = start_node(procs, endpoint, tmp_config, "--name", "doomed", env={"LAMA_TEST_SLEEP_MS": "60000"})
    wait_for(lambda: _credit(producer, "doomed"), 60, "the first node to offer credit")
    image = png(320, 240, seed=7)
    task_id = _submit(producer, image)
    wait_for(lambda: producer.get(task_id)["status"] == "processing", 30, "the task to start")
    heir = start_node(procs, endpoint, tmp_config, "--name", "heir", env={"LAMA_TEST_SLEEP_MS": "100"})
    wait_for(lambda: _credit(producer, "heir"), 60, "the second node to offer credit")
    doomed.kill(signal.SIGKILL)
    done = _completed(producer, task_id, timeout=60)
    assert done["attempts"] == 2
    _same_pixels(producer, task_id, image)
    assert sched.output().count(SHARES) == 2
    wait_for(lambda: BY_REFERENCE in heir.output(), 10, "the retry's result to have gone by reference")


def test_a_task_given_by_reference_survives_a_scheduler_restart(
    tmp_path: Path, procs: list[Proc], tmp_config: Path, producer_for
):
    """The node keeps running the task it was given through shared memory while the scheduler is
    killed and started again; it registers again naming the task and its slot, and its result (now
    for another registration) reaches the new scheduler as bytes: completed once, with its own image."""
    port = free_port_block(3)
    data = tmp_path / "data"
    first = _scheduler(procs, port, data, tmp_config)
    producer = producer_for(port)
    node = start_node(procs, f"tcp://127.0.0.1:{port}", tmp_config, "--name", "steady")
    wait_for(lambda: _credit(producer, "steady"), 60, "the node to offer credit")
    image = png(320, 240, seed=11)
    task_id = _submit(producer, image, 4000)
    wait_for(lambda: producer.get(task_id)["status"] == "processing", 30, "the task to start")
    first.kill(signal.SIGKILL)
    first.proc.wait(10)
    second = _scheduler(procs, port, data, tmp_config)
    done = _completed(producer, task_id, timeout=60)
    assert done["attempts"] == 1, "the node's run was kept, not repeated"
    _same_pixels(producer, task_id, image)
    assert "came back still running task" in second.output() or "still runs task" in second.output()
    assert SHARES in second.output()
    wait_for(lambda: f"task {task_id} completed" in node.output(), 10, "the node's completion line")
    assert BY_REFERENCE not in node.output(), "a result for an earlier registration is sent as bytes"
