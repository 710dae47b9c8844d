"""CURVE on a real scheduler's sockets: only allow-listed keys get in, the allow-list is read again
without a restart, a public bind needs keys, and a node reports only on what was dispatched to it.

Peers are the scripted protocol peers of ``peers.py`` with CURVE client keys (``tests/support/curve_keys``).
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

import pytest
import zmq

from lama_cleaner.plugins.distributed.scheduler.service import JOURNAL_FILE, Scheduler
from lama_cleaner.plugins.distributed.security.bind_policy import InsecureBind
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Peer, make_config, resource_class_of
from tests.support.curve_keys import KeyRing
from tests.support.server_process import REPO_ROOT, server_env
from tests.support.waiting import wait_for


@pytest.fixture
def ring(tmp_path) -> KeyRing:
    ring = KeyRing(tmp_path, ("node-a", "node-b", "producer", "stranger"))
    for name in ("node-a", "node-b", "producer"):
        ring.allow(name)
    return ring


def attempt(send, *args) -> bool:
    """Send as a refused peer would: once its handshake failed its DEALER has no peer at all and a
    send cannot even be queued (False). Either way nothing it sends is read."""
    try:
        send(*args)
    except zmq.Again:
        return False
    return True


def refused_peer(peer) -> None:
    """Make a peer's sends give up at once instead of blocking for a connection that never comes."""
    for sock in [peer.sock] if hasattr(peer, "sock") else [peer.control.sock]:
        sock.setsockopt(zmq.SNDTIMEO, 0)


def node_hello(node) -> dict:
    caps = {"device": "cpu", "models": ["cv2"], "queues_requested": [], "labels": {}}
    return {"node_id": node.node_id, "capabilities": caps, "task_id": None, "attempt": None}


def counter(sched: Scheduler, name: str) -> int:
    return sched.stats()[name]


def counter_above(sched: Scheduler, name: str, floor: int, what: str) -> int:
    return wait_for(lambda: counter(sched, name) > floor and counter(sched, name), 10, what)


def test_an_unknown_key_cannot_register_pull_or_report(scheduler_factory, peers, ring, zctx, caplog):
    caplog.set_level(logging.WARNING)
    sched = scheduler_factory(**ring.scheduler_settings())
    producer = peers("producer", sched, secure=ring.client("producer"))
    node = peers("node", sched, secure=ring.client("node-a"))
    node.hello()

    # Register: the stranger's HELLO never gets past the handshake, so no WELCOME can come back.
    stranger = peers("node", sched, secure=ring.client("stranger"), name=node.node_id)
    refused_peer(stranger)
    attempt(stranger.control.send, p.HELLO, {"node_id": "intruder", "capabilities": {"device": "cpu"}})
    counter_above(sched, "rejected_peers", 0, "the stranger's handshake to be refused")
    assert f"refused a peer with unknown CURVE key {ring.public('stranger')}" in caplog.text
    # Pull: a READY on the queue socket, in the name of the registered node.
    thief = Peer(zctx, sched.endpoints["queues"]["cpu"], "node", ring.client("stranger"))
    refused_peer(thief)
    attempt(thief.send, p.READY, {"node_id": node.node_id})
    task = producer.submit("cv2").header["task"]
    node.ready()
    sent = node.expect_task()
    assert sent.header["task_id"] == task["id"]
    # Report: a RESULT for that task, on a fresh connection (libzmq does not retry a refused one).
    before = counter(sched, "rejected_peers")
    stranger.reconnect()
    refused_peer(stranger)
    attempt(stranger.result, sent, b"forged")
    counter_above(sched, "rejected_peers", before, "the stranger's RESULT connection to be refused")
    node.result(sent, body=b"genuine")
    wait_for(lambda: producer.status(task["id"]) == "completed", message="the genuine result")
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blobs == [b"genuine"]
    # Nothing ever reached the stranger's sockets, and it is not a node here.
    assert stranger.control.take(p.WELCOME) is None and thief.take(p.TASK) is None
    nodes = producer.request(p.NODES, {}).header["nodes"]
    assert [n["id"] for n in nodes] == [node.node_id]
    assert counter(sched, "garbage_frames") == 0
    thief.close()


def test_a_plaintext_peer_is_not_served_by_a_curve_scheduler(scheduler_factory, peers, ring, caplog):
    caplog.set_level(logging.WARNING)
    sched = scheduler_factory(**ring.scheduler_settings())
    plain = peers("producer", sched)  # no keys at all
    refused_peer(plain)
    attempt(plain.send, p.PING, {"req_id": "plain"})
    counter_above(sched, "rejected_peers", 0, "the plaintext handshake to be refused")
    assert "whose handshake failed" in caplog.text
    keyed = peers("producer", sched, secure=ring.client("producer"))
    assert keyed.request(p.PING, {}).command == p.PONG
    assert plain.take(p.PONG) is None


def test_the_allow_list_is_read_again_without_a_restart(scheduler_factory, peers, ring, caplog):
    caplog.set_level(logging.WARNING)
    ring.revoke("node-b")
    sched = scheduler_factory(**ring.scheduler_settings())
    node = peers("node", sched, secure=ring.client("node-b"))
    node.control.sock.setsockopt(zmq.SNDTIMEO, 5000)  # it gets a connection once its key is listed
    attempt(node.control.send, p.PING, {})
    counter_above(sched, "rejected_peers", 0, "node-b to be refused while its key is not listed")

    ring.allow("node-b")  # admitted from its next connection attempt on, same scheduler

    def new_connection_welcomed() -> bool:
        # libzmq does not retry a refused connection: a peer makes new sockets, as real nodes do
        # when their liveness window passes without an answer.
        node.reconnect()
        node.control.sock.setsockopt(zmq.SNDTIMEO, 1000)
        attempt(node.control.send, p.HELLO, node_hello(node))
        return node.control.sock.poll(1000) and node.control.take(p.WELCOME) is not None

    wait_for(new_connection_welcomed, 20, "node-b to be admitted after its key was listed")
    node.hello()
    node.ready()
    producer = peers("producer", sched, secure=ring.client("producer"))
    task = producer.submit("cv2").header["task"]
    node.result(node.expect_task())
    wait_for(lambda: producer.status(task["id"]) == "completed", message="node-b to serve a task")

    ring.revoke("node-b")  # shut out, open connection included
    before = counter(sched, "rejected_peers")

    def heartbeat_dropped() -> bool:
        node.heartbeat()  # a node keeps talking; the change is noticed within allow_list.min_interval_s
        return counter(sched, "rejected_peers") > before

    wait_for(heartbeat_dropped, 10, "node-b's heartbeats to be dropped once its key is removed")
    assert "which is no longer allowed" in caplog.text
    node.control.send(p.PING, {"req_id": "after-revoke"})
    assert producer.request(p.PING, {}).command == p.PONG
    counter_above(sched, "rejected_peers", before + 1, "node-b's PING to be dropped too")
    assert node.control.take(p.PONG) is None


def test_a_public_bind_without_keys_is_refused_with_the_fix(tmp_path, ring):
    sched = Scheduler(make_config(tmp_path, scheduler_bind="tcp://0.0.0.0:0"), resource_class_of)
    with pytest.raises(InsecureBind) as refused:
        sched.start()
    message = str(refused.value)
    assert "\n" not in message and "tcp://0.0.0.0:0" in message
    assert "lama-cleaner keys generate scheduler" in message and "distributed.curve_secret_key" in message
    assert not (tmp_path / "data" / JOURNAL_FILE).exists()  # refused before anything was opened

    keyed = Scheduler(make_config(tmp_path, scheduler_bind="tcp://0.0.0.0:0", **ring.scheduler_settings()),
                      resource_class_of).start()  # fmt: skip
    try:
        assert keyed.control_endpoint.startswith("tcp://0.0.0.0:")
    finally:
        keyed.close()


def test_the_scheduler_command_refuses_a_public_bind_without_keys_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "scheduler", "--bind", "tcp://0.0.0.0:0",
         "--data-dir", str(tmp_path / "data")],
        cwd=REPO_ROOT, env=server_env(None), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if "could not start" in line]
    assert len(lines) == 1 and "lama-cleaner keys generate scheduler" in lines[0], done.stderr


@pytest.mark.parametrize("keyed", [True, False], ids=["curve", "plaintext"])
def test_a_node_cannot_report_on_a_task_dispatched_to_another(scheduler_factory, peers, ring, tmp_path, keyed):
    settings = ring.scheduler_settings() if keyed else {}
    sched = scheduler_factory(**settings)
    secure = ring.client if keyed else (lambda name: None)
    producer = peers("producer", sched, secure=secure("producer"))
    owner = peers("node", sched, secure=secure("node-a"))
    other = peers("node", sched, secure=secure("node-b"))
    owner.hello()
    other.hello()
    owner.ready()
    task = producer.submit("cv2").header["task"]
    sent = owner.expect_task()
    attempt = sent.header["attempt"]

    other.control.send(p.PROGRESS, {"node_id": other.node_id, "task_id": task["id"], "attempt": attempt,
                                    "percent": 50.0, "step": 1, "total_steps": 2})  # fmt: skip
    other.failed(sent, retryable=False, error="forged failure")
    other.cancelled(sent)
    other.result(sent, body=b"forged")
    counter_above(sched, "foreign_reports", 3, "the four foreign reports to be refused")
    info = producer.get(task["id"])
    assert (info["status"], info["node"], info["progress"], info["error"]) == ("processing", owner.node_id, 0.0, None)

    if keyed:  # with keys a node id belongs to the key that registered it
        floor = counter(sched, "foreign_reports")
        as_owner = {"node_id": owner.node_id, "task_id": task["id"], "attempt": attempt, "mimetype": "image/png",
                    "headers": {}}  # fmt: skip
        other.control.send(p.RESULT, as_owner, {"body": b"x"})
        other.control.send(p.HELLO, {"node_id": owner.node_id, "capabilities": {"device": "cpu"}})
        other.queue_peers["cpu"].send(p.READY, {"node_id": owner.node_id})
        counter_above(sched, "foreign_reports", floor + 2, "the impersonations to be refused")
        assert producer.get(task["id"])["status"] == "processing"

    owner.result(sent, body=b"genuine")
    wait_for(lambda: producer.status(task["id"]) == "completed", message="the owner's result")
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blobs == [b"genuine"]
    assert counter(sched, "duplicates") == 0
    rows = (
        sqlite3.connect(tmp_path / "data" / JOURNAL_FILE)
        .execute("SELECT attempt, node_id, peer_key FROM task_dispatches WHERE task_id = ?", (task["id"],))
        .fetchall()
    )
    assert rows == [(attempt, owner.node_id, ring.public("node-a") if keyed else None)]


def test_a_frame_over_the_size_limit_drops_its_sender_and_nothing_else(scheduler_factory, peers, ring):
    sched = scheduler_factory(max_message_mb=1, **ring.scheduler_settings())
    big = peers("producer", sched, secure=ring.client("producer"))
    big.sock.setsockopt(zmq.SNDTIMEO, 5000)
    big.send(p.SUBMIT, {"req_id": "big", "task": {"kind": "inpaint", "name": "cv2"}},
             {"image": b"\0" * (1024 * 1024 + 1), "mask": b"m"})  # fmt: skip
    small = peers("producer", sched, secure=ring.client("producer"))
    accepted = small.submit("cv2")
    assert accepted.command == p.ACCEPTED
    listed = small.request(p.LIST, {"status": None, "limit": 10, "offset": 0}).header
    assert [t["id"] for t in listed["tasks"]] == [accepted.header["task"]["id"]]
    assert big.take(p.ACCEPTED) is None


def test_a_node_only_key_serves_as_a_node_and_every_producer_request_from_it_is_refused(
    scheduler_factory, peers, ring, tmp_path, caplog
):
    """``curve_node_keys``: a worker's key registers, takes a task and reports on it, but cannot submit,
    read, fetch, list, cancel or drain, so a compromised worker cannot reach other users' tasks."""
    caplog.set_level(logging.WARNING)
    ring.revoke("node-a")  # not in curve_authorized_keys: only in the workers' folder
    workers = tmp_path / "workers"
    workers.mkdir()
    (workers / "node-a.key").write_bytes((ring.dir / "node-a.key").read_bytes())
    sched = scheduler_factory(**ring.scheduler_settings(), curve_node_keys=str(workers))
    producer = peers("producer", sched, secure=ring.client("producer"))
    node = peers("node", sched, secure=ring.client("node-a"))
    node.hello()
    task = producer.submit("cv2").header["task"]
    node.ready()
    sent = node.expect_task()
    node.result(sent, body=b"genuine")
    wait_for(lambda: producer.status(task["id"]) == "completed", message="the node-only key's result")

    posing = peers("producer", sched, secure=ring.client("node-a"))
    before = counter(sched, "rejected_peers")
    requests = [
        (p.GET, {"task_id": task["id"]}),
        (p.FETCH, {"task_id": task["id"]}),
        (p.NODES, {}),
        (p.CANCEL, {"task_id": task["id"]}),
        (p.DRAIN, {"node_id": node.node_id}),
    ]
    for command, header in requests:
        reply = posing.request(command, header)
        assert reply.command == p.REJECTED, (command, reply.header)
        assert (reply.header["status"], reply.header["code"]) == (403, "node_key")
        assert f"may act only as a node (distributed.curve_node_keys): {command} refused" in reply.header["message"]
    refused = posing.submit("cv2")
    assert (refused.command, refused.header["status"]) == (p.REJECTED, 403)
    assert counter(sched, "rejected_peers") == before + len(requests) + 1
    assert "it may act only as a node (curve_node_keys)" in caplog.text
    # Nothing changed: one task, completed, and the node is not draining.
    assert producer.request(p.FETCH, {"task_id": task["id"]}).blobs == [b"genuine"]
    [listed] = producer.request(p.NODES, {}).header["nodes"]
    assert listed["id"] == node.node_id and listed["state"] != "draining"
    assert producer.get(task["id"])["status"] == "completed"

    # A key in both folders may do both (the folder is read again, no restart).
    ring.allow("node-a")
    wait_for(lambda: posing.request(p.GET, {"task_id": task["id"]}).command == p.INFO, 5, "GET to be served")


def test_a_producer_only_key_submits_and_reads_but_cannot_register_as_a_node(
    scheduler_factory, peers, ring, tmp_path, caplog
):
    """``curve_producer_keys``: a web server's key submits and reads, but its HELLO is answered ERROR
    ``forbidden`` and never WELCOMEd, so a compromised web server cannot pull other users' images."""
    caplog.set_level(logging.WARNING)
    ring.revoke("producer")
    servers = tmp_path / "servers"
    servers.mkdir()
    (servers / "producer.key").write_bytes((ring.dir / "producer.key").read_bytes())
    sched = scheduler_factory(**ring.scheduler_settings(), curve_producer_keys=str(servers))
    producer = peers("producer", sched, secure=ring.client("producer"))
    task = producer.submit("cv2").header["task"]
    assert producer.get(task["id"])["status"] == "queued"

    before = counter(sched, "rejected_peers")
    posing = peers("node", sched, secure=ring.client("producer"))
    posing.control.send(p.HELLO, posing.hello_header(None))
    error = posing.control.expect(p.ERROR)
    assert error.header["code"] == p.ERR_FORBIDDEN
    assert "may act only as a producer (distributed.curve_producer_keys): HELLO refused" in error.header["message"]
    assert counter(sched, "rejected_peers") == before + 1
    assert "it may act only as a producer (curve_producer_keys)" in caplog.text
    assert producer.request(p.NODES, {}).header["nodes"] == []
    assert posing.control.take(p.WELCOME) is None

    # A real worker key still serves the task the producer submitted.
    node = peers("node", sched, secure=ring.client("node-a"))
    node.hello()
    node.ready()
    node.result(node.expect_task(), body=b"done")
    wait_for(lambda: producer.status(task["id"]) == "completed", message="the task on a real node")
