"""The HTTP server's thread pool and drain, without sockets: threads are daemons started on demand up
to the bound, errors reach the future, and a drain refuses work only once begun and reports when the
requests in flight are done."""

from __future__ import annotations

import threading

import pytest
from flask import Flask

from lama_cleaner.server.draining import Drain
from lama_cleaner.server.errors import install_error_handlers
from lama_cleaner.server.http_server import DaemonThreadPool


def test_the_pool_runs_jobs_on_daemon_threads_up_to_its_bound():
    pool = DaemonThreadPool(3)
    release = threading.Event()
    started = threading.Semaphore(0)

    def job(n: int) -> tuple[int, bool]:
        started.release()
        release.wait(30)
        return n, threading.current_thread().daemon

    futures = [pool.submit(job, n) for n in range(5)]
    for _ in range(3):
        assert started.acquire(timeout=30)
    assert not started.acquire(timeout=0.2), "a fourth job waits: three threads at most"
    release.set()
    assert [f.result(30) for f in futures] == [(n, True) for n in range(5)]
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(30)
    pool.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        pool.submit(job, 9)


def test_a_drain_refuses_work_once_begun_and_waits_for_requests_in_flight():
    app = Flask(__name__)
    install_error_handlers(app)
    drain = Drain.install(app, grace_s=30)
    entered, leave = threading.Event(), threading.Event()

    @app.post("/work")
    def work():
        entered.set()
        leave.wait(30)
        return "done"

    client = app.test_client()
    leave.set()
    assert client.post("/work").status_code == 200, "served normally before the drain"
    entered.clear()
    leave.clear()
    slow = threading.Thread(target=lambda: client.post("/work"))
    slow.start()
    assert entered.wait(30)
    drained = threading.Event()
    drain.begin(on_drained=drained.set)
    refused = app.test_client().post("/work")
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "shutting down" in refused.get_data(as_text=True)
    assert app.test_client().get("/nothing").status_code == 404, "reads are still routed"
    assert not drained.wait(0.2), "a request is still in flight"
    leave.set()
    slow.join(30)
    assert drained.wait(30)
