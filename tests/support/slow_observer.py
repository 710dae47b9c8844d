"""Test plugin: a ``task_event`` observer that is as slow as the test wants.

Each call waits until the file named by ``LAMA_TEST_OBSERVER_GATE`` exists (up to a minute), then
records the event. ``GET /test-observers/slow`` answers how many events it has finished. With the
gate closed, a server whose replies or other observers waited for it would stall visibly.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from flask import jsonify

from lama_cleaner.plugins.hookspecs import hookimpl

_done: list[str] = []
_lock = threading.Lock()
GATE_WAIT_S = 60.0


@hookimpl
def task_event(event):
    gate = os.environ.get("LAMA_TEST_OBSERVER_GATE")
    deadline = time.monotonic() + GATE_WAIT_S
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the gate file: the observer's whole job is to be slow
    with _lock:
        _done.append(f"{event.task_id}:{event.status}")


@hookimpl
def register_routes(app):
    @app.get("/test-observers/slow")
    def slow_seen():
        with _lock:
            return jsonify(done=list(_done))
