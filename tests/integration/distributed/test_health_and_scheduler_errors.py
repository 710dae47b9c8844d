"""``GET /api/v1/health`` and the scheduler's ERROR replies, over real HTTP on loopback, with a real
embedded scheduler (crashed for real), a real external one, and a scripted scheduler of another
protocol version (a rolling upgrade) on a real ZeroMQ ROUTER."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import zmq

from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from tests.integration.scheduler.peers import ScriptedNode, make_config, resource_class_of
from tests.support.waiting import wait_for

from .in_process_web import WebServer, inpaint, serve_in_process

V2_MESSAGE = "protocol version 1 is not supported (this peer speaks 2)"


def _health(url: str) -> requests.Response:
    return requests.get(f"{url}/api/v1/health", timeout=30)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """``web(**distributed_settings)`` -> an in-process server (its scheduler can be broken for real)
    on a real HTTP port; all are stopped afterwards."""
    yield from serve_in_process(tmp_path)


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_health_of_a_working_embedded_scheduler_counts_online_nodes(web, zctx):
    server = web()
    r = _health(server.url)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"status": "ok", "scheduler": "embedded", "scheduler_running": True, "nodes_online": 0,
                        "nodes": {"idle": 0, "busy": 0, "draining": 0, "offline": 0}}  # fmt: skip
    node = ScriptedNode(zctx, server.executor.scheduler)
    try:
        node.hello()
        node.heartbeat()
        body = _health(server.url).json()
        assert body["status"] == "ok" and body["nodes_online"] == 1 and body["nodes"]["idle"] == 1
    finally:
        node.close()
    # a node that went silent is offline: no longer counted as online
    wait_for(lambda: _health(server.url).json()["nodes_online"] == 0, 10, "the silent node to go offline")
    assert _health(server.url).json()["nodes"]["offline"] == 1


def test_health_is_503_once_the_embedded_scheduler_crashed(web):
    server = web()
    scheduler = server.executor.scheduler
    assert _health(server.url).status_code == 200

    def broken(now: float) -> float:
        raise RuntimeError("injected loop failure")

    scheduler._poll_timeout = broken  # the loop calls it every iteration: it dies on the next one
    scheduler._wake()
    wait_for(lambda: not scheduler.running, 10, "the scheduler loop to die")
    started = time.monotonic()
    r = _health(server.url)
    assert time.monotonic() - started < 2  # answered from the crash flag, no round trip to wait for
    assert r.status_code == 503 and r.headers["Retry-After"] == str(server.config.distributed.retry_after_s)
    assert r.json() == {"status": "unavailable", "scheduler": "embedded", "scheduler_running": False,
                        "reason": "task scheduler stopped: RuntimeError: injected loop failure"}  # fmt: skip
    # the rest of the server stays up (and keeps saying why it cannot work)
    assert requests.get(f"{server.url}/api/v1/tasks", timeout=10).status_code == 503


def test_health_follows_an_external_scheduler_going_away(web, tmp_path: Path):
    sched = Scheduler(make_config(tmp_path / "external"), resource_class_of).start()
    try:
        server = web(scheduler=sched.control_endpoint)
        r = _health(server.url)
        assert r.status_code == 200 and r.json()["scheduler"] == "external" and r.json()["scheduler_running"]
    finally:
        sched.close()
    assert sched.join(10)
    started = time.monotonic()
    r = _health(server.url)
    assert time.monotonic() - started < 5  # the probe's own short timeout, not the 15 s request timeout
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable" and body["scheduler"] == "external"
    assert body["reason"] == f"the task scheduler at {sched.control_endpoint} did not answer within 2s"


class FutureScheduler:
    """A scheduler of protocol version 2, as a newer release would run mid-upgrade: it answers every
    message with ``ERROR {code: version}`` in its own envelope (``LC2``), naming the request's req_id."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            ident, *frames = self.sock.recv_multipart()
            header = {"code": "version", "message": V2_MESSAGE}
            req_id = json.loads(frames[2]).get("req_id")
            if req_id is not None:
                header["req_id"] = req_id
            self.sock.send_multipart([ident, b"LC2", b"ERROR", json.dumps(header).encode()])
            self.answered += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


def test_scheduler_of_another_version_is_a_clear_502_at_once(web, zctx):
    future = FutureScheduler(zctx)
    try:
        server = web(scheduler=future.endpoint)
        started = time.monotonic()
        api = requests.get(f"{server.url}/api/v1/tasks", timeout=30)
        classic = inpaint(server.url, timeout=30)
        health = _health(server.url)
        assert time.monotonic() - started < 5  # not 15 s per request, then a misleading 503
        message = f"The scheduler refused this web server's request (protocol version mismatch): {V2_MESSAGE}"
        assert api.status_code == 502
        assert api.json() == {"error": {"code": "scheduler_version_mismatch", "message": message}}
        assert classic.status_code == 502 and classic.headers["Content-Type"].startswith("text/plain")
        assert classic.text == message
        assert health.status_code == 503 and health.json()["reason"] == message
    finally:
        future.close()
