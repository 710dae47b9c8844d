"""A real scheduler thread (real ZeroMQ, real SQLite journal) and scripted nodes: a task that a node
never started (handed back by a draining or stopping node, or in flight to a node that left) goes
back to the queue without being charged an attempt, so it still completes with ``max_attempts = 1``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, ScriptedNode, make_config, resource_class_of
from tests.support.waiting import wait_for

from .conftest import Proc, mask_png, png, start_node, task_form


@pytest.fixture
def one_attempt(tmp_path) -> Iterator[Scheduler]:
    """A scheduler whose inpaint tasks get a single attempt: any charged attempt fails them."""
    config = make_config(tmp_path)
    config.distributed.retry["inpaint"].max_attempts = 1
    sched = Scheduler(config, resource_class_of).start()
    yield sched
    sched.stop()
    assert sched.join(10), "scheduler thread did not stop"


@pytest.fixture
def peer() -> Iterator[Callable[..., Any]]:
    ctx = zmq.Context()
    made: list[Any] = []

    def make(kind: str, sched: Scheduler) -> Any:
        made.append(ScriptedNode(ctx, sched) if kind == "node" else Producer(ctx, sched))
        return made[-1]

    yield make
    for item in made:
        item.close()
    ctx.destroy(linger=0)


def _ready(peer: Callable[..., Any], sched: Scheduler) -> ScriptedNode:
    node = peer("node", sched)
    node.hello()
    node.ready()
    return node


def _task(producer: Producer, task_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(lambda: (t := producer.get(task_id))["status"] in statuses and t, 10, f"task in {statuses}")


def test_a_handed_back_task_is_requeued_uncharged_and_completes_elsewhere(one_attempt, peer):
    producer = peer("producer", one_attempt)
    draining = _ready(peer, one_attempt)
    task_id = producer.submit("cv2").header["task"]["id"]
    sent = draining.expect_task()
    # What a node that began draining as the TASK crossed answers (node/agent.py ``_hand_back``).
    draining.failed(sent, retryable=True, error="node was not idle", status=503, handed_back=True, ready=False)
    queued = _task(producer, task_id, ("queued", "failed"))
    assert queued["status"] == "queued" and queued["attempts"] == 0
    assert one_attempt.stats()["handed_back"] == 1
    # ready: false -> no credit: the same node is not handed the task again.
    other = _ready(peer, one_attempt)
    again = other.expect_task()
    assert again.header["task_id"] == task_id and again.header["attempt"] == 2  # a new dispatch number
    assert draining.take_task() is None
    other.result(again)
    done = _task(producer, task_id, ("completed", "failed"))
    assert done["status"] == "completed" and done["attempts"] == 1


def test_a_plain_retryable_failure_is_still_charged(one_attempt, peer):
    """The contrast: without ``handed_back`` the same FAILED uses the only attempt."""
    producer = peer("producer", one_attempt)
    node = _ready(peer, one_attempt)
    task_id = producer.submit("cv2").header["task"]["id"]
    node.failed(node.expect_task(), retryable=True, error="node was not idle", status=503)
    failed = _task(producer, task_id, ("failed",))
    assert failed["attempts"] == 1


def test_a_task_in_flight_to_a_node_that_says_bye_holding_nothing_is_not_charged(one_attempt, peer):
    producer = peer("producer", one_attempt)
    leaving = _ready(peer, one_attempt)
    task_id = producer.submit("cv2").header["task"]["id"]
    leaving.expect_task()  # delivered to its socket; the node's loop had already stopped reading
    leaving.control.send(p.BYE, {"node_id": leaving.node_id, "reason": "shutdown", "task_id": None})
    queued = _task(producer, task_id, ("queued", "failed"))
    assert queued["status"] == "queued" and queued["attempts"] == 0
    other = _ready(peer, one_attempt)
    other.result(other.expect_task())
    assert _task(producer, task_id, ("completed", "failed"))["status"] == "completed"


@pytest.mark.parametrize("bye", [{"task_id": "named"}, {}], ids=["bye-names-the-task", "bye-without-task-id"])
def test_a_node_that_leaves_while_running_its_task_is_charged(one_attempt, peer, bye):
    """A BYE naming the task (it was running) or from an older node (no ``task_id``): charged as before."""
    producer = peer("producer", one_attempt)
    leaving = _ready(peer, one_attempt)
    task_id = producer.submit("cv2").header["task"]["id"]
    leaving.expect_task()
    header = {"node_id": leaving.node_id, "reason": "shutdown"}
    if bye:
        header["task_id"] = task_id
    leaving.control.send(p.BYE, header)
    assert _task(producer, task_id, ("failed",))["attempts"] == 1


# ---------------------------------------------------------------------- with real node processes
def _submit_count(producer: Producer, marker: str) -> str:
    """SUBMIT a ``count`` task with real images (the node decodes them), as a web server would."""
    task = {"kind": "inpaint", "name": "count", "form": task_form(marker), "submitter": None, "idempotency_key": None}
    accepted = producer.request(p.SUBMIT, {"task": task}, {"image": png(), "mask": mask_png()})
    assert accepted.command == p.ACCEPTED, accepted.header
    return accepted.header["task"]["id"]


def _node_with_credit(producer: Producer) -> dict[str, Any] | None:
    nodes = producer.request(p.NODES, {}).header["nodes"]
    return next((n for n in nodes if n["credit"]), None)


def test_a_real_node_stopped_as_its_task_arrives_hands_it_back_and_another_node_runs_it(
    tmp_path: Path, tmp_config: Path, procs: list[Proc], peer
):
    """The race for real: the scheduler dispatches to a node it believes idle while that node is
    being stopped. SIGSTOP freezes the node so that the TASK is sent before it notices anything;
    SIGTERM is then pending and its handler runs before the node's loop reads the TASK."""
    config = make_config(tmp_path)
    config.distributed.retry["inpaint"].max_attempts = 1
    sched = Scheduler(config, lambda kind, name: "cpu").start()
    try:
        count_file = tmp_path / "runs.txt"
        env = {"LAMA_TEST_COUNT_FILE": str(count_file)}
        producer = peer("producer", sched)
        first = start_node(procs, sched.control_endpoint, tmp_config, "--stop-grace", "30", env=env)
        wait_for(lambda: _node_with_credit(producer), 60, "the first node to offer credit")
        first.kill(signal.SIGSTOP)
        try:
            task_id = _submit_count(producer, "raced")
            wait_for(lambda: producer.get(task_id)["status"] == "processing", 10, "the TASK to be dispatched")
            first.kill(signal.SIGTERM)  # pending until the node runs again, then handled first
        finally:
            first.kill(signal.SIGCONT)
        queued = wait_for(lambda: (t := producer.get(task_id))["status"] != "processing" and t, 10, "hand-back")
        assert queued["status"] == "queued" and queued["attempts"] == 0, queued
        wait_for(lambda: not first.alive(), 10, "the first node to exit")
        # Either path of the race gives the task back uncharged: the node read the TASK after the stop
        # began (FAILED handed_back) or had not received it yet (BYE with task_id null).
        assert sched.stats()["handed_back"] == 1
        start_node(procs, sched.control_endpoint, tmp_config, env=env)
        done = wait_for(lambda: (t := producer.get(task_id))["status"] in ("completed", "failed") and t, 60, "done")
        assert done["status"] == "completed" and done["attempts"] == 1 and done["max_attempts"] == 1, done
        assert count_file.read_text().split() == ["raced"]  # run once, by the second node
    finally:
        sched.stop()
        assert sched.join(10), "scheduler thread did not stop"


def test_a_node_that_keeps_handing_a_task_back_is_eventually_charged(tmp_path, peer):
    """Hand-backs are free only up to MAX_UNCHARGED_DISPATCHES: a buggy node that bounces a task
    every time cannot keep it queued for ever; past the bound the hand-back costs an attempt, and
    with the attempts spent the task fails with the node's error."""
    from lama_cleaner.plugins.distributed.scheduler.node_handlers import MAX_UNCHARGED_DISPATCHES

    config = make_config(tmp_path)
    config.distributed.retry["inpaint"].max_attempts = 2
    config.distributed.retry["inpaint"].backoff_base_s = 0.0
    sched = Scheduler(config, resource_class_of).start()
    try:
        producer = peer("producer", sched)
        task_id = producer.submit("cv2").header["task"]["id"]
        bouncer = peer("node", sched)
        bouncer.hello()
        for dispatch in range(1, MAX_UNCHARGED_DISPATCHES + 3):
            bouncer.ready()
            sent = bouncer.expect_task()
            assert sent.header["attempt"] == dispatch
            bouncer.failed(sent, retryable=True, error="node was not idle", status=503, handed_back=True, ready=False)
            final = _task(producer, task_id, ("queued", "failed"))
            if final["status"] == "failed":
                break
        assert final["status"] == "failed", final
        assert dispatch == MAX_UNCHARGED_DISPATCHES + 2  # free up to the bound, then two charged attempts
        assert final["attempts"] == 2 and "node was not idle" in final["error"]
        assert sched.stats()["handed_back"] == MAX_UNCHARGED_DISPATCHES
    finally:
        sched.stop()
        assert sched.join(10)
