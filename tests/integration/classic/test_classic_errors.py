"""The last-resort error handlers and the event sink, on a bare Flask app (no server process needed)."""

from __future__ import annotations

import logging

import pluggy
import pytest
from flask import Flask

from lama_cleaner.errors import ClientError, InferenceError, Overloaded, TaskTimeout
from lama_cleaner.events import EventSink
from lama_cleaner.plugins import hookspecs
from lama_cleaner.server.errors import install_error_handlers
from lama_cleaner.tasks import TaskEvent


@pytest.fixture
def client():
    app = Flask(__name__)
    install_error_handlers(app)

    @app.get("/raise/<kind>")
    def raise_(kind: str):
        errors = {
            "client": ClientError("Missing form field: image"),
            "overloaded": Overloaded("Server is busy, retry later", retry_after=7),
            "inference": InferenceError("CUDA out of memory"),
            "timeout": TaskTimeout("Task did not finish in time"),
            "bug": ZeroDivisionError("division by zero"),
        }
        raise errors[kind]

    return app.test_client()


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("client", 400, "Missing form field: image"),
        ("overloaded", 503, "Server is busy, retry later"),
        ("inference", 500, "CUDA out of memory"),
        ("timeout", 504, "Task did not finish in time"),
        ("bug", 500, "Internal Server Error"),
    ],
)
def test_errors_become_plain_text_with_their_status(client, kind, status, body):
    response = client.get(f"/raise/{kind}")
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == body


def test_overloaded_sends_retry_after(client):
    assert client.get("/raise/overloaded").headers["Retry-After"] == "7"


def test_unexpected_errors_are_logged_with_traceback(client, caplog):
    with caplog.at_level(logging.ERROR, logger="lama_cleaner.server.errors"):
        client.get("/raise/bug")
    assert any(record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records)


def test_http_errors_are_plain_text(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.mimetype == "text/plain"
    assert "<" not in response.get_data(as_text=True)


class _Broken:
    @hookspecs.hookimpl
    def task_event(self, event):
        raise RuntimeError("observer bug")


class _Recorder:
    def __init__(self):
        self.seen = []

    @hookspecs.hookimpl
    def task_event(self, event):
        self.seen.append(event.status)


def test_event_sink_survives_a_failing_observer(caplog):
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    recorder = _Recorder()
    pm.register(recorder)
    pm.register(_Broken())  # registered last, so pluggy calls it first
    sink = EventSink(pm)
    with caplog.at_level(logging.ERROR, logger="lama_cleaner.events"):
        sink.emit(TaskEvent(task_id="t1", status="completed"))
        assert sink.flush(10), "every observer handled the event"
    sink.close()
    assert "observer bug" in caplog.text
    assert recorder.seen == ["completed"], "the other observers still get the event"
    assert sink.plugin_manager is pm
