"""Test plugin: a ``task_event`` observer that raises on every event it gets.

``GET /test-observers/raising`` answers how many times it was called: it must keep being called
after its first failure, and its failures must reach neither the task nor the other observers.
"""

from __future__ import annotations

import threading

from flask import jsonify

from lama_cleaner.plugins.hookspecs import hookimpl

_calls: list[str] = []
_lock = threading.Lock()


@hookimpl
def task_event(event):
    with _lock:
        _calls.append(event.status)
    raise RuntimeError(f"raising observer refuses {event.status}")


@hookimpl
def register_routes(app):
    @app.get("/test-observers/raising")
    def raising_calls():
        with _lock:
            return jsonify(calls=list(_calls))
