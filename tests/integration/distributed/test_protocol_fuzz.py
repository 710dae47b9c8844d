"""100,000 random and malformed messages against a live CURVE scheduler while a real node serves
real tasks (issue 9, "hostile protocol input").

The scheduler runs in this process (its counters and journal are read directly); the node is a real
``lama-cleaner node`` subprocess with its own key; a real producer (``SchedulerClient``, its own key)
submits tasks the whole time and checks every result. The fuzzer (``tests/support/protocol_fuzz``,
seeded) speaks through an allow-listed key, so its garbage reaches the parser, plus connections with
an unknown key, without CURVE, and with frames over ``max_message_mb``. Afterwards: the rejects were
counted and logged, no TASK ever reached a fuzz socket, every dispatch went to the real node, every
real task completed with its own result, and the journal passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
from lama_cleaner.plugins.distributed.scheduler.service import JOURNAL_FILE, Scheduler
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.curve_keys import KeyRing
from tests.support.protocol_fuzz import Fuzzer

from .conftest import Proc, mask_png, merged, png, start_node, task_form, wait_for, write_config

MESSAGES = int(os.environ.get("LAMA_FUZZ_MESSAGES", "100000"))
SEED = int(os.environ.get("LAMA_FUZZ_SEED", "20261205"))
TIMING = {"heartbeat_interval_s": 0.5, "heartbeat_liveness": 6, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
"""Slower heartbeats than the other tests' 0.2 s: the box is busy fuzzing, and the point is that
garbage does not disturb the real node, not how fast a silent one is noticed."""
TASK_STATES = {"queued", "processing", "completed", "failed", "cancelled"}


def scheduler_config(tmp_path: Path, ring: KeyRing) -> Config:
    config = Config()
    settings = {**TIMING, **ring.scheduler_settings(), "max_message_mb": 1,
                "scheduler_bind": "tcp://127.0.0.1:0", "data_dir": str(tmp_path / "data")}  # fmt: skip
    for key, value in settings.items():
        setattr(config.distributed, key, value)
    return config


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


class RealProducer(threading.Thread):
    """Submits one task at a time (each with its own image and idempotency key) until told to stop,
    and checks that each result is its own image (the fake ``sleep`` model returns its input)."""

    def __init__(self, client: SchedulerClient, fuzzer: Fuzzer) -> None:
        super().__init__(name="real-producer", daemon=True)
        self.client = client
        self.fuzzer = fuzzer
        self.stop = threading.Event()
        self.done: list[tuple[str, float]] = []
        self.wrong: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            seed = 0
            while not self.stop.is_set():
                seed += 1
                self.one(seed)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def one(self, seed: int) -> None:
        image = png(seed=seed)
        task = {"kind": "inpaint", "name": "sleep", "form": task_form("5"), "idempotency_key": f"real-{seed}"}
        header = {"task": task, "blobs": ["image", "mask"]}
        accepted = self.client.request(p.SUBMIT, header, [image, mask_png()], timeout=60)
        task_id = accepted.header["task"]["id"]
        self.fuzzer.real_tasks.append(task_id)
        self.fuzzer.replayable.append(p.encode(p.SUBMIT, {"req_id": f"replay-{seed}", **header}, [image, mask_png()]))
        status = wait_for(
            lambda: (s := self.client.request(p.GET, {"task_id": task_id}, timeout=60).header["task"]["status"])
            in ("completed", "failed", "cancelled") and s,
            120, f"real task {task_id}", interval=0.02,
        )  # fmt: skip
        if status != "completed":
            self.wrong.append(f"{task_id}: {status}")
            return
        body = self.client.request(p.FETCH, {"task_id": task_id}, timeout=60).blobs[0]
        if not np.array_equal(decoded(body), decoded(image)):
            self.wrong.append(f"{task_id}: another image")
        self.done.append((task_id, time.monotonic()))


class FuzzSockets:
    """The fuzzer's DEALERs (allow-listed key) on the control socket and every queue socket; their
    inboxes are drained as it goes and any TASK among the replies is recorded."""

    def __init__(self, ctx: zmq.Context, sched: Scheduler, ring: KeyRing) -> None:
        secure = ring.client("fuzz")
        self.targets: list[tuple[str, zmq.Socket]] = []
        for target, endpoint in [("control", sched.control_endpoint), *(
                ("queue", ep) for ep in sched.endpoints["queues"].values())]:  # fmt: skip
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDTIMEO, 30000)  # paced by the high-water mark, never stuck for good
            secure(sock)
            sock.connect(endpoint)
            self.targets.append((target, sock))
        self.tasks_received = 0
        self.replies = 0

    def drain(self) -> None:
        for _, sock in self.targets:
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.replies += 1
                if len(frames) > 1 and frames[1] == p.TASK.encode():
                    self.tasks_received += 1

    def close(self) -> None:
        for _, sock in self.targets:
            sock.close(0)


def hostile_connections(ctx: zmq.Context, sched: Scheduler, ring: KeyRing, rounds: int = 30) -> list[zmq.Socket]:
    """Connections that must not get in, ``rounds`` of each: an unknown key, no CURVE at all, and an
    allow-listed key sending a frame over ``max_message_mb``. Returned open (so each handshake
    happens); the caller closes them."""
    endpoints = [sched.control_endpoint, *sched.endpoints["queues"].values()]
    kinds = (("stranger", ring.client("stranger")), ("plaintext", None), ("oversized", ring.client("fuzz")))
    socks = []
    for i in range(rounds):
        for kind, secure in kinds:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDTIMEO, 0)
            if secure is not None:
                secure(sock)
            sock.connect(endpoints[i % len(endpoints)])
            if kind == "oversized":
                frames = [p.SIGNATURE, p.HELLO.encode(), b"{}", b"\0" * (1024 * 1024 + 1)]
            else:
                frames = p.encode(p.HELLO, {"node_id": f"{kind}-{i}", "capabilities": {"device": "cpu"}})
            try:
                sock.send_multipart(frames)
            except zmq.Again:
                pass
            socks.append(sock)
    return socks


@pytest.mark.slow
def test_a_live_scheduler_survives_100k_hostile_messages_while_a_real_node_serves(
    tmp_path: Path, procs: list[Proc], caplog
):
    caplog.set_level(logging.WARNING, logger="lama_cleaner.plugins.distributed")
    ring = KeyRing(tmp_path, ("node", "web", "fuzz", "stranger"))
    for name in ("node", "web", "fuzz"):
        ring.allow(name)
    sched = Scheduler(scheduler_config(tmp_path, ring), lambda kind, name: "cpu").start()
    ctx = zmq.Context()
    client = None
    producer = None
    fuzz = None
    try:
        node_config = write_config(tmp_path, merged({"distributed": {**TIMING, **ring.client_settings("node")}}))
        start_node(procs, sched.control_endpoint, node_config, "--name", "real", "--queues", "cpu")
        client_config = Config()
        for key, value in {**TIMING, **ring.client_settings("web")}.items():
            setattr(client_config.distributed, key, value)
        client = SchedulerClient(sched.control_endpoint, client_config, request_timeout_s=60)
        real = wait_for(lambda: sched.stats()["node_list"], 120, "the real node to register")
        fuzzer = Fuzzer(SEED)
        fuzzer.real_node = real[0]["id"]
        producer = RealProducer(client, fuzzer)
        producer.start()
        wait_for(lambda: producer.done or producer.error, 120, "a first real task before the fuzzing starts")

        fuzz = FuzzSockets(ctx, sched, ring)
        started = time.monotonic()
        done_before = len(producer.done)
        for i in range(MESSAGES):
            target, sock = fuzz.targets[0] if i % 3 else fuzzer.rng.choice(fuzz.targets)
            sock.send_multipart(fuzzer.message(target))
            if i % 500 == 0:
                fuzz.drain()
            if i == MESSAGES // 2:
                hostiles = hostile_connections(ctx, sched, ring)
        fuzzed_for = time.monotonic() - started
        # 30 unknown keys (refused by the allow-list) and 30 plaintext peers (refused at the handshake).
        wait_for(lambda: sched.stats()["rejected_peers"] >= 60, 60, "every hostile connection to be refused")
        for sock in hostiles:
            sock.close(0)
        served_meanwhile = len(producer.done) - done_before
        # Let the scheduler read the last of it, then one more real task must still go through.
        wait_for(lambda: producer.done and producer.done[-1][1] > time.monotonic() - 5 and len(producer.done) >
                 done_before + served_meanwhile, 120, "a real task completed after the fuzzing")  # fmt: skip
        producer.stop.set()
        producer.join(180)
        fuzz.drain()
        stats = sched.stats()
    finally:
        if producer is not None:
            producer.stop.set()
        if fuzz is not None:
            fuzz.close()
        if client is not None:
            client.close()
        sched.close(10)
        ctx.destroy(0)

    counters = {k: v for k, v in stats.items() if isinstance(v, int)}
    print(f"{MESSAGES} messages in {fuzzed_for:.1f}s; {served_meanwhile} real tasks served meanwhile; {counters}")
    assert producer.error is None, repr(producer.error)
    assert producer.wrong == []
    assert served_meanwhile >= 1, "the real node served nothing while the fuzzer ran"
    # Counted and logged, never crashing the loop or a handler.
    assert sched.crashed is None and stats["handler_errors"] == 0 and stats["journal_errors"] == 0
    assert stats["garbage_frames"] > MESSAGES // 4
    assert stats["foreign_reports"] > 0 and stats["stale_messages"] + stats["duplicates"] >= 0
    for line in ("dropped a malformed message", "refused a report from the wrong node",
                 "refused a peer with unknown CURVE key", "whose handshake failed"):  # fmt: skip
        assert line in caplog.text, line
    # Never dispatched on bad input: no TASK to a fuzz socket, every dispatch to the real node.
    assert fuzz.tasks_received == 0
    db = sqlite3.connect(tmp_path / "data" / JOURNAL_FILE)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    rows = db.execute("SELECT id, status, idempotency_key, result_sha256 FROM tasks").fetchall()
    assert {status for _, status, _, _ in rows} <= TASK_STATES
    assert len(rows) == len(producer.done) and all(key and key.startswith("real-") for _, _, key, _ in rows)
    assert all(status == "completed" and digest for _, status, _, digest in rows)
    owners = db.execute("SELECT DISTINCT node_id, peer_key FROM task_dispatches").fetchall()
    assert owners == [(fuzzer.real_node, ring.public("node"))]
    missing = db.execute(
        "SELECT COUNT(*) FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = t.result_sha256)"
    ).fetchone()[0]
    assert missing == 0
