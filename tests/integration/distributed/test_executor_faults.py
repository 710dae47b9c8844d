"""The web server with the distributed plugin, in this process (so a test can break its embedded
scheduler for real), served over real HTTP on loopback: what clients see when no node can run a task,
when the scheduler loop dies, and when a request cannot be queued."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lama_cleaner.errors import ClientError
from lama_cleaner.tasks import TaskRequest
from tests.support.waiting import wait_for

from .in_process_web import WebServer, inpaint, serve_in_process


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """``web(**distributed_settings)`` -> a started in-process server; all are stopped afterwards."""
    yield from serve_in_process(tmp_path)


def test_inpaint_with_no_node_gets_503_with_the_reason_not_a_504(web):
    server = web(unschedulable_timeout_s=0.5)
    started = time.monotonic()
    r = inpaint(server.url)
    assert time.monotonic() - started < 10  # not request_timeout_s (600 s)
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Retry-After"] == str(server.config.distributed.retry_after_s)
    assert r.text == "no online node can run model 'cv2' on queue 'cpu' (no nodes online); gave up after 0.5s"
    tasks = requests.get(f"{server.url}/api/v1/tasks", timeout=10).json()["tasks"]
    assert [(t["status"], t["error"]) for t in tasks] == [("failed", r.text)]
    result = requests.get(f"{server.url}/api/v1/tasks/{tasks[0]['id']}/result", timeout=10)
    assert result.status_code == 409 and result.json()["error"]["message"] == r.text


def test_crashed_scheduler_loop_fails_waiting_and_new_requests_at_once(web):
    server = web(unschedulable_timeout_s=0)  # nothing else ends the wait: no node, no timeout
    scheduler = server.executor.scheduler
    outcome: dict[str, Any] = {}

    def wait_inpaint() -> None:
        outcome["response"] = inpaint(server.url)
        outcome["at"] = time.monotonic()

    waiter = threading.Thread(target=wait_inpaint)
    waiter.start()
    wait_for(lambda: scheduler.store.live.queued_count() == 1, 10, "the /inpaint task to be queued")

    def broken(now: float) -> float:
        raise RuntimeError("injected loop failure")

    scheduler._poll_timeout = broken  # the loop calls it every iteration: it dies on the next one
    crashed_at = time.monotonic()
    scheduler._wake()
    waiter.join(30)
    assert not waiter.is_alive()
    assert outcome["at"] - crashed_at < 5  # not 600 s (request_timeout_s), not 15 s (a request timeout)
    r = outcome["response"]
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/plain") and "Retry-After" in r.headers
    assert r.text == "task scheduler stopped: RuntimeError: injected loop failure"
    assert isinstance(scheduler.crashed, RuntimeError)
    wait_for(lambda: not scheduler.running, 10, "the loop thread to end")

    started = time.monotonic()
    again = inpaint(server.url)
    api = requests.get(f"{server.url}/api/v1/tasks", timeout=30)
    assert time.monotonic() - started < 5
    assert again.status_code == 503 and again.text == r.text
    assert api.status_code == 503 and api.json()["error"] == {"code": "scheduler_stopped", "message": r.text}


def test_request_that_cannot_be_encoded_is_a_400_not_a_500(web):
    server = web()
    request = TaskRequest(kind="plugin", name="MakeGIF", form={}, files={"": b"x"})
    with pytest.raises(ClientError) as info:
        server.executor.submit(request)
    assert info.value.status == 400 and "Cannot queue this request" in info.value.message
