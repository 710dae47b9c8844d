"""Hand-written protocol v1 peers (DEALER sockets) and a scheduler config for the scheduler tests.

The scripted node and producer speak protocol v1 frame by frame, so these tests check the scheduler
against the wire contract itself, not against our own node/producer implementations.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.waiting import wait_for

SocketSetup = Callable[[zmq.Socket], None]
"""Applied to each peer socket before it connects (CURVE keys in the security tests)."""

RESOURCE_CLASSES = {("inpaint", "cv2"): "cpu", ("inpaint", "lama"): "gpu", ("inpaint", "fake"): "cpu"}


def resource_class_of(kind: str, name: str) -> str | None:
    return RESOURCE_CLASSES.get((kind, name))


def make_config(tmp_path, **dist: Any) -> Config:
    cfg = Config()
    cfg.distributed.scheduler_bind = "tcp://127.0.0.1:0"
    cfg.distributed.data_dir = str(tmp_path / "data")
    cfg.distributed.heartbeat_interval_s = 0.25
    cfg.distributed.heartbeat_liveness = 4
    for kind in cfg.distributed.retry.values():
        kind.backoff_base_s = 0.05
        kind.backoff_max_s = 0.2
    for key, value in dist.items():
        setattr(cfg.distributed, key, value)
    return cfg


class Peer:
    """A DEALER that collects decoded messages in arrival order."""

    def __init__(self, ctx: zmq.Context, endpoint: str, receiver: str, secure: SocketSetup | None = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if secure is not None:
            secure(self.sock)  # e.g. CURVE client keys, before connecting
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.receiver = receiver
        self.inbox: list[p.Message] = []
        self.on_pump: Callable[[], None] | None = None

    def send(self, command: str, header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> None:
        if blobs:
            self.sock.send_multipart(p.encode_named(command, header, blobs))
        else:
            self.sock.send_multipart(p.encode(command, header))

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def pump(self) -> None:
        if self.on_pump is not None:
            self.on_pump()
        while self.sock.poll(0):
            self.inbox.append(p.decode(self.sock.recv_multipart(), receiver=self.receiver))

    def take(self, command: str, pred: Callable[[p.Message], bool] = lambda m: True) -> p.Message | None:
        self.pump()
        for i, msg in enumerate(self.inbox):
            if msg.command == command and pred(msg):
                return self.inbox.pop(i)
        return None

    def expect(self, command: str, pred: Callable[[p.Message], bool] = lambda m: True, timeout: float = 5.0):
        return wait_for(lambda: self.take(command, pred), timeout=timeout, message=f"{command} message")

    def close(self) -> None:
        self.sock.close()


class ScriptedNode:
    """A node driven step by step: HELLO, READY per queue, RESULT/FAILED on demand."""

    def __init__(self, ctx: zmq.Context, sched: Any, *, device: str = "cpu", models=None, queues=None,
                 name: str | None = None, secure: SocketSetup | None = None) -> None:  # fmt: skip
        self.ctx = ctx
        self.secure = secure
        self.node_id = name or f"node-{uuid.uuid4().hex[:8]}"
        self.control = Peer(ctx, sched.control_endpoint, "node", secure)
        self.device = device
        self.models = models
        self.requested = queues or []
        self.queue_peers: dict[str, Peer] = {}
        self.welcome: p.Message | None = None
        self.silent = False
        self.loaded_model: str | None = None
        self.last_beat = 0.0
        self.control.on_pump = self.tick

    def tick(self) -> None:
        """Heartbeat while the test waits on this node, as a real node's loop would (unless silent)."""
        if not self.silent and self.welcome is not None and time.monotonic() - self.last_beat > 0.05:
            self.heartbeat()

    def hello(self, running: p.Message | None = None) -> p.Message:
        """HELLO (naming the TASK still being run, if any, as a reconnecting node does) -> WELCOME."""
        self.control.send(p.HELLO, self.hello_header(running))
        self.welcome = self.control.expect(p.WELCOME)
        for q, endpoint in self.welcome.header["queues"].items():
            if q not in self.queue_peers:
                self.queue_peers[q] = Peer(self.ctx, endpoint, "node", self.secure)
                self.queue_peers[q].on_pump = self.tick
        return self.welcome

    def hello_header(self, running: p.Message | None) -> dict[str, Any]:
        """The HELLO this node sends (a subclass adds fields: ``slots``, the tasks it holds)."""
        caps = {"device": self.device, "models": self.models or ["cv2", "lama", "fake"],
                "queues_requested": self.requested, "labels": {}}  # fmt: skip
        return {"node_id": self.node_id, "name": self.node_id, "version": "test", "pid": 1, "capabilities": caps,
                "loaded_model": None, "public_key": None,
                "task_id": running.header["task_id"] if running else None,
                "attempt": running.header["attempt"] if running else None}  # fmt: skip

    def reconnect(self, sched: Any | None = None) -> None:
        """Drop every socket and connect fresh ones (new identities), as a node does when it loses
        the scheduler; ``sched`` is a restarted scheduler to connect to instead. Call hello() next."""
        self.close()
        self.queue_peers = {}
        self.welcome = None
        endpoint = sched.control_endpoint if sched is not None else self.control.endpoint
        self.control = Peer(self.ctx, endpoint, "node", self.secure)
        self.control.on_pump = self.tick

    def ready(self) -> None:
        for peer in self.queue_peers.values():
            peer.send(p.READY, {"node_id": self.node_id})

    def heartbeat(self, state: str = "idle", task_id: str | None = None) -> None:
        self.last_beat = time.monotonic()
        self.control.send(p.HEARTBEAT, {"node_id": self.node_id, "state": state, "task_id": task_id,
                                        "loaded_model": self.loaded_model})  # fmt: skip

    def take_task(self) -> p.Message | None:
        for peer in self.queue_peers.values():
            msg = peer.take(p.TASK)
            if msg is not None:
                if msg.header["kind"] == "inpaint":
                    self.loaded_model = msg.header["name"]  # a real node loads the model it runs
                return msg
        return None

    def expect_task(self, timeout: float = 5.0) -> p.Message:
        return wait_for(self.take_task, timeout=timeout, message=f"TASK at {self.node_id}")

    def result(self, task: p.Message, body: bytes = b"result-bytes", attempt: int | None = None) -> None:
        header = {"node_id": self.node_id, "task_id": task.header["task_id"],
                  "attempt": task.header["attempt"] if attempt is None else attempt,
                  "mimetype": "image/png", "headers": {"X-Seed": "42"}}  # fmt: skip
        self.control.send(p.RESULT, header, {"body": body})

    def failed(self, task: p.Message, *, retryable: bool, error: str = "boom", status: int = 500,
               **extra: Any) -> None:  # fmt: skip
        self.control.send(p.FAILED, {"node_id": self.node_id, "task_id": task.header["task_id"],
                                     "attempt": task.header["attempt"], "error": error, "traceback": "Traceback...",
                                     "retryable": retryable, "status": status, **extra})  # fmt: skip

    def cancelled(self, task: p.Message, **extra: Any) -> None:
        self.control.send(p.CANCELLED, {"node_id": self.node_id, "task_id": task.header["task_id"],
                                        "attempt": task.header["attempt"], **extra})  # fmt: skip

    def close(self) -> None:
        self.control.close()
        for peer in self.queue_peers.values():
            peer.close()


class SlottedNode(ScriptedNode):
    """A scripted node with ``slots`` whose heartbeats name every task it holds (``task_ids``)."""

    def __init__(self, ctx: zmq.Context, sched: Any, slots: int) -> None:
        super().__init__(ctx, sched, models=["cv2"])
        self.slots = slots
        self.held: dict[str, int] = {}

    def hello_header(self, running: p.Message | None) -> dict[str, Any]:
        header = super().hello_header(None)
        tasks = [[t, a] for t, a in self.held.items()]
        header["capabilities"]["slots"] = self.slots
        header["task_id"], header["attempt"] = tasks[0] if tasks else (None, None)
        header["tasks"] = tasks
        return header

    def heartbeat(self, state: str = "idle", task_id: str | None = None) -> None:
        self.last_beat = time.monotonic()
        held = list(self.held)
        self.control.send(p.HEARTBEAT, {"node_id": self.node_id, "state": "busy" if held else "idle",
                                        "task_id": held[0] if held else None, "task_ids": held,
                                        "loaded_model": self.loaded_model})  # fmt: skip

    def take_task(self) -> p.Message | None:
        msg = super().take_task()
        if msg is not None:
            self.held[msg.header["task_id"]] = msg.header["attempt"]
        return msg

    def done(self, task: p.Message) -> None:
        self.held.pop(task.header["task_id"], None)
        self.result(task)


class Producer(Peer):
    """A producer: request/reply by req_id, plus WATCHed events."""

    _ids = itertools.count(1)

    def __init__(self, ctx: zmq.Context, sched: Any, secure: SocketSetup | None = None) -> None:
        super().__init__(ctx, sched.control_endpoint, "producer", secure)

    def request(self, command: str, header: dict[str, Any], blobs: dict[str, bytes] | None = None,
                timeout: float = 5.0) -> p.Message:  # fmt: skip
        req_id = f"r{next(self._ids)}"
        self.send(command, {"req_id": req_id, **header}, blobs)
        return wait_for(lambda: self._reply(req_id), timeout=timeout, message=f"reply to {command}")

    def _reply(self, req_id: str) -> p.Message | None:
        self.pump()
        for i, msg in enumerate(self.inbox):
            if msg.header.get("req_id") == req_id:
                return self.inbox.pop(i)
        return None

    def submit(self, name: str = "cv2", kind: str = "inpaint", key: str | None = None, *, want_result: bool = False,
               **extra: Any) -> p.Message:  # fmt: skip
        task = {"kind": kind, "name": name, "form": {"ldmSteps": "20"}, "submitter": "sid-1",
                "idempotency_key": key, **extra}  # fmt: skip
        header: dict[str, Any] = {"task": task, "want_result": True} if want_result else {"task": task}
        return self.request(p.SUBMIT, header, {"image": b"\x89PNG-image", "mask": b"\x89PNG-mask"})

    def get(self, task_id: str) -> dict[str, Any]:
        return self.request(p.GET, {"task_id": task_id}).header["task"]

    def status(self, task_id: str) -> str:
        return self.get(task_id)["status"]


# Setup steps that many tests share. ``peers`` is the conftest fixture: peers(kind, sched, **kwargs).


def ready_node(peers: Callable[..., Any], sched: Any, **kwargs: Any) -> ScriptedNode:
    """A scripted node that has said HELLO and sent READY on every queue it was given."""
    node = peers("node", sched, **kwargs)
    node.hello()
    node.ready()
    return node


def watching_producer(peers: Callable[..., Any], sched: Any) -> Producer:
    """A producer that WATCHes task events (as producer "web-1")."""
    producer = peers("producer", sched)
    producer.request(p.WATCH, {"producer_id": "web-1"})
    return producer


def dispatch(
    producer: Producer, node: ScriptedNode, name: str = "cv2", **submit: Any
) -> tuple[dict[str, Any], p.Message]:
    """Submit a task and wait until ``node`` receives it; returns (the task as accepted, the TASK message)."""
    task = producer.submit(name, **submit).header["task"]
    return task, node.expect_task()


def run_task(producer: Producer, node: ScriptedNode, name: str = "cv2", body: bytes = b"result-bytes",
             **submit: Any) -> dict[str, Any]:  # fmt: skip
    """Submit a task, wait until ``node`` receives it and send its RESULT; returns the task as accepted."""
    task, sent = dispatch(producer, node, name, **submit)
    node.result(sent, body=body)
    return task


def expect_completed_event(producer: Producer, task_id: str) -> p.Message:
    """Wait for the watching ``producer`` to get the task's "completed" EVENT."""
    return producer.expect(p.EVENT, lambda m: m.header["task_id"] == task_id and m.header["status"] == "completed")


def wait_completed(producer: Producer, task_id: str, message: str = "completed") -> None:
    """Wait until the scheduler reports the task as completed."""
    wait_for(lambda: producer.status(task_id) == "completed", message=message)
