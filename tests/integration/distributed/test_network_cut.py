"""A short network cut must not leave an idle node without work for good.

ZeroMQ reconnects a dropped TCP connection by itself. For a queue socket (a DEALER without a fixed
identity) that means a new identity at the scheduler's ROUTER: the credit the node gave from the old
socket points nowhere, the next TASK bounces, and the node, idle all along, had already sent its one
READY of this idle period. The scheduler therefore asks an idle node it holds no credit from for
READY (``HEARTBEAT send_ready: true``) and the node answers it.

The real parts: a real scheduler (in this process), a real node subprocess, and a loopback TCP proxy
in front of both the control and the queue endpoint that drops every connection for about a second
(well inside the 3 s liveness window, so neither side declares the other lost).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, make_config
from tests.support.tcp_proxy import LoopbackProxy

from .conftest import Proc, ScriptedScheduler, handshake, mask_png, png, start_node, task_form, wait_for

CUT_S = 1.0
"""How long the network is down: shorter than the liveness window (0.5 s x 6), longer than
ZeroMQ's reconnect interval, so the sockets reconnect on their own and nothing else notices."""


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _submit(producer: Producer, marker: str) -> str:
    task: dict[str, Any] = {"kind": "inpaint", "name": "sleep", "form": task_form(f"20 {marker}"),
                            "submitter": None, "idempotency_key": None}  # fmt: skip
    reply = producer.request(p.SUBMIT, {"task": task}, {"image": png(), "mask": mask_png()})
    assert reply.command == p.ACCEPTED, reply.header
    return reply.header["task"]["id"]


def _done(producer: Producer, task_ids: list[str]) -> bool:
    return all(producer.status(t) == "completed" for t in task_ids)


@pytest.fixture
def cut_setup(tmp_path: Path, procs: list[Proc], tmp_config: Path):
    config = make_config(tmp_path, queues=["cpu"], heartbeat_interval_s=0.5, heartbeat_liveness=6)
    sched = Scheduler(config, lambda kind, name: "cpu").start()
    control = LoopbackProxy(_port(sched.control_endpoint))
    queue = LoopbackProxy(_port(sched.endpoints["queues"]["cpu"]))
    # The node reaches the scheduler only through the proxies: the queue grant names the proxy too.
    sched.endpoints["queues"]["cpu"] = queue.endpoint
    ctx = zmq.Context()
    producer = Producer(ctx, sched)
    try:
        yield sched, control, queue, producer
    finally:
        producer.close()
        ctx.destroy(linger=0)
        control.close()
        queue.close()
        sched.stop()
        assert sched.join(10)


def test_an_idle_node_gets_work_again_after_a_short_network_cut(cut_setup, procs: list[Proc], tmp_config: Path):
    sched, control, queue, producer = cut_setup
    start_node(procs, control.endpoint, tmp_config, "--name", "cut-node")
    wait_for(lambda: [n["credit"] for n in producer.request(p.NODES, {}).header["nodes"]] == [["cpu"]], 60,
             "the node to register and offer credit")  # fmt: skip
    before = _submit(producer, "before")
    wait_for(lambda: _done(producer, [before]), 30, "a task before the cut")
    [node] = producer.request(p.NODES, {}).header["nodes"]
    wait_for(lambda: producer.request(p.NODES, {}).header["nodes"][0]["credit"] == ["cpu"], 10, "idle again")

    control.cut()
    queue.cut()
    time.sleep(CUT_S)  # the length of the outage itself, not a wait for something to happen
    control.restore()
    queue.restore()
    wait_for(lambda: control.connections >= 2 and queue.connections >= 2, 10, "both sockets to reconnect")

    after = [_submit(producer, f"after{i}") for i in range(3)]
    wait_for(lambda: _done(producer, after), 20, "the tasks submitted after the cut to complete")
    # The same registration all along (nobody declared anybody lost), and nothing ran twice or got lost.
    [still] = producer.request(p.NODES, {}).header["nodes"]
    assert still["id"] == node["id"] and still["state"] == "idle"
    assert still["tasks_done"] == 4
    assert all(producer.get(t)["attempts"] == 1 for t in [before, *after])
    assert sched.stats()["requeued_on_node_loss"] == 0


def test_a_node_answers_send_ready_with_ready_only_while_idle(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path
):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, node_id = handshake(scripted)
    # Idle, READY already sent for this idle period: asked again, it sends it again.
    scripted.send("control", ident, p.HEARTBEAT, {"send_ready": True})
    where, _, ready = scripted.recv(10, [p.READY])
    assert where == "queue" and ready.header["node_id"] == node_id
    # Busy: the request is no reason for a second credit; READY comes only after the outcome.
    scripted.send_task(qident, "busy", "sleep", "3000")
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header["state"] == "busy", 30, "the node to be busy")
    scripted.send("control", ident, p.HEARTBEAT, {"send_ready": True})
    # Two periodic heartbeats (0.2 s apart) later the node has handled the request, still busy: a READY
    # it answered with would have left well before them. Nothing but those heartbeats may have come.
    for _ in range(2):
        _, _, msg = scripted.recv(10)
        assert (msg.command, msg.header.get("state")) == (p.HEARTBEAT, "busy"), msg
    # Then the outcome on the control socket and READY on the queue socket, which this process may see
    # in either order (two TCP connections).
    where, _, outcome = scripted.recv(30, [p.RESULT, p.FAILED])
    assert (where, outcome.command) == ("control", p.RESULT)
    where, _, _ = scripted.recv(30, [p.READY])
    assert where == "queue"
