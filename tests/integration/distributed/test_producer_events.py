"""``SchedulerClient`` and EVENTS: it opts in with ``batch_events`` in WATCH and hands every event of
an EVENTS message to ``on_event`` in order, against a hand-driven ROUTER (the wire contract) and
against a real scheduler (the same events a watcher without batching gets one by one)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from lama_cleaner.plugins.config_loader import load_config
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, ScriptedNode, make_config, resource_class_of
from tests.support.waiting import wait_for


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _event(task_id: str, status: str) -> dict[str, Any]:
    return {"task_id": task_id, "status": status, "kind": "inpaint", "name": "cv2", "queue": "cpu",
            "node": None, "progress": 0.0, "step": None, "error": None, "submitter": None, "attempts": 0,
            "at": 1.0}  # fmt: skip


def _recv(router: zmq.Socket) -> tuple[bytes, p.Message]:
    frames = wait_for(lambda: router.poll(0) and router.recv_multipart(), timeout=10, message="a client message")
    ident, body = p.split_identity(frames)
    return ident, p.decode(body, receiver="scheduler")


def test_client_opts_in_and_delivers_each_batched_event_in_order(zctx):
    """Wire level: WATCH carries ``batch_events: true``; EVENTS items reach ``on_event`` one by one,
    a listener failing on one item loses none of the others, and a malformed EVENTS is dropped whole."""
    router = zctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    seen: list[tuple[str, str]] = []

    def listener(event: dict[str, Any]) -> None:
        seen.append((event["task_id"], event["status"]))
        if event["status"] == "processing":
            raise RuntimeError("a listener bug")

    client = SchedulerClient(endpoint, load_config(None), on_event=listener)  # 1 s heartbeat: no reconnect here
    try:
        ident, watch = _recv(router)
        assert watch.command == p.WATCH
        assert watch.header == {"producer_id": client.producer_id, "batch_events": True}
        router.send_multipart([ident, *p.encode(p.PONG, {})])
        batch = [_event("a", "queued"), _event("a", "processing"), _event("b", "queued"), _event("a", "completed")]
        router.send_multipart([ident, *p.encode(p.EVENTS, {"events": batch})])
        bad = {"events": [_event("x", "queued"), {"task_id": "y"}]}
        router.send_multipart([ident, p.SIGNATURE, p.EVENTS.encode(), json.dumps(bad).encode()])
        router.send_multipart([ident, *p.encode(p.EVENT, _event("c", "queued"))])  # a plain EVENT still works

        wait_for(lambda: ("c", "queued") in seen, timeout=10, message="the EVENT after the batches")
        # Messages on one connection are handled in order, so everything before the EVENT is in.
        assert seen == [("a", "queued"), ("a", "processing"), ("b", "queued"), ("a", "completed"), ("c", "queued")]
    finally:
        client.close()


def test_client_sees_what_a_watcher_without_batching_sees(tmp_path: Path, zctx):
    """Against a real scheduler: rounds with several events come as EVENTS, and ``on_event`` gets
    exactly the events, in exactly the order, that a watcher getting one EVENT each receives."""
    config = make_config(tmp_path, heartbeat_liveness=40)  # the plain watcher sends no keepalive
    sched = Scheduler(config, resource_class_of).start()
    received: list[dict[str, Any]] = []
    client = SchedulerClient(sched.control_endpoint, config, on_event=received.append)
    commands: list[str] = []
    dispatch = client._dispatch

    def recording(msg: p.Message) -> None:
        commands.append(msg.command)
        dispatch(msg)

    client._dispatch = recording  # type: ignore[method-assign]
    plain = Producer(zctx, sched)
    node = ScriptedNode(zctx, sched)
    try:
        plain.request(p.WATCH, {"producer_id": "web-plain"})
        wait_for(lambda: sched.stats()["watchers"] == 2, timeout=10, message="both producers watching")
        node.hello()
        node.ready()
        header = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": None},
                  "blobs": ["image", "mask"]}  # fmt: skip
        ids = [client.request(p.SUBMIT, header, [b"img", b"mask"]).header["task"]["id"] for _ in range(3)]
        for _ in ids:
            node.result(node.expect_task())  # completes one task and dispatches the next in one round

        def completed(events: list[dict[str, Any]]) -> bool:
            return {e["task_id"] for e in events if e["status"] == "completed"} == set(ids)

        wait_for(lambda: completed(received), timeout=10, message="every completed event at the client")
        plain_events: list[dict[str, Any]] = []

        def plain_done() -> bool:
            while (msg := plain.take(p.EVENT)) is not None:
                plain_events.append(msg.header)
            return completed(plain_events)

        wait_for(plain_done, timeout=10, message="every completed event at the plain watcher")
        assert received == plain_events
        assert p.EVENTS in commands
        assert plain.take(p.EVENTS) is None
    finally:
        client.close()
        plain.close()
        node.close()
        sched.close()


def test_a_terminal_event_reaches_the_listener_then_wakes_the_tasks_result_slot(zctx):
    """Wire level: for a task SUBMITted with ``want_result`` whose DONE does not come, its terminal
    event (inside an EVENTS) is handed to ``on_event`` first and then marks and wakes its result slot;
    a reconnect and a close wake it too, so a waiting request never depends on the executor."""
    router = zctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    order: list[str] = []
    client = SchedulerClient(endpoint, load_config(None), on_event=lambda e: order.append(f"event {e['status']}"))
    done = threading.Event()
    try:
        header = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": "k"},
                  "want_result": True}  # fmt: skip
        pending = client.send_request(p.SUBMIT, header, done_event=done)
        ident, submit = _recv(router)
        while submit.command == p.WATCH:  # the subscription (and keepalives) come first
            router.send_multipart([ident, *p.encode(p.PONG, {})])
            ident, submit = _recv(router)
        assert submit.command == p.SUBMIT and submit.header["want_result"] is True
        accepted = {"req_id": submit.header["req_id"], "task": {"id": "a", "status": "queued"}}
        router.send_multipart([ident, *p.encode(p.ACCEPTED, accepted)])
        assert client.wait_reply(pending).command == p.ACCEPTED
        slot = client.result_slot("a")
        assert slot is not None and slot.event is done and not slot.finished
        router.send_multipart(
            [ident, *p.encode(p.EVENTS, {"events": [_event("a", "processing"), _event("b", "completed")]})]
        )
        router.send_multipart([ident, *p.encode(p.EVENT, _event("c", "queued"))])
        wait_for(lambda: "event queued" in order, timeout=10, message="the events")
        assert not done.is_set() and not slot.finished  # neither a running task's event nor another task's

        done_at_listener: list[bool] = []
        client.on_event = lambda e: done_at_listener.append(done.is_set())
        router.send_multipart([ident, *p.encode(p.EVENT, _event("a", "completed"))])
        assert done.wait(10), "the terminal event did not wake the slot"
        assert done_at_listener == [False]  # the listener had the event before the waiter woke
        assert slot.status == "completed" and slot.message is None and client.result("a") is None

        done.clear()
        client._notify_reconnect()  # what the I/O thread does once a recreated socket hears the scheduler
        assert done.is_set() and slot.status == "completed"
        done.clear()
        client.close()
        assert done.is_set() and client.closed
    finally:
        client.close()
