"""Live ``task_status`` events for API tasks, with real python-socketio clients.

The submitter names its socket with ``X-Socket-ID``; other clients get nothing for that task unless
they ``subscribe`` to it, and stop getting events after ``unsubscribe``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import socketio

from lama_cleaner.client import LamaCleanerClient
from tests.support.waiting import wait_for

from .helpers import mask_png, png

ORDER = {"queued": 0, "processing": 1, "completed": 2, "failed": 2, "cancelled": 2}


class Recorder:
    """A connected Socket.IO client that records ``task_status`` payloads."""

    def __init__(self, url: str) -> None:
        self.statuses: list[dict] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("task_status", self._on_status)
        # Long-polling only: event routing is the same as over websocket, and closing a python-socketio
        # websocket client blocks ~3 s, which would dominate this module's run time.
        self.sio.connect(url, wait_timeout=10, transports=["polling"])

    def _on_status(self, payload: dict) -> None:
        with self._lock:
            self.statuses.append(payload)

    def for_task(self, task_id: str) -> list[dict]:
        with self._lock:
            return [p for p in self.statuses if p.get("id") == task_id]

    def round_trip(self) -> None:
        """An acknowledged call: whatever the server emitted to us before it has arrived."""
        assert self.sio.call("whoami", timeout=10)["sid"] == self.sid

    def call(self, event: str, data: dict) -> dict:
        return self.sio.call(event, data, timeout=10)

    @property
    def sid(self) -> str:
        return self.sio.get_sid("/")

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def recorders(api_server) -> Iterator[tuple[Recorder, Recorder, Recorder]]:
    made = [Recorder(api_server.url) for _ in range(3)]
    try:
        yield tuple(made)  # type: ignore[misc]
    finally:
        for rec in made:
            rec.close()


def _assert_ordered(events: list[dict], task_id: str) -> None:
    assert events, "no task_status events"
    assert all(e["id"] == task_id for e in events)
    ranks = [ORDER[e["status"]] for e in events]
    assert ranks == sorted(ranks), f"statuses out of order: {[e['status'] for e in events]}"
    progress = [e["progress"] for e in events if e["status"] == "processing" and e["progress"] is not None]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    assert events[-1]["status"] == "completed"
    assert set(events[-1]) >= {"id", "status", "progress", "queue", "node", "error"}


def test_events_reach_the_submitter_in_order_and_nobody_else(api: LamaCleanerClient, recorders):
    submitter, bystander, _ = recorders
    task = api.submit(png(), mask_png(), model="steps", prompt="steps=5 40", socket_id=submitter.sid)
    wait_for(
        lambda: any(e["status"] == "completed" for e in submitter.for_task(task["id"])),
        30,
        "the completed event at the submitter",
    )
    events = submitter.for_task(task["id"])
    _assert_ordered(events, task["id"])
    assert any(e["status"] == "processing" and (e["progress"] or 0) > 0 for e in events), events
    assert events[-1]["node"] and events[-1]["queue"] == "cpu"
    submitter.round_trip()
    bystander.round_trip()
    assert bystander.for_task(task["id"]) == [], "a client that did not submit or subscribe got events"


def test_a_subscriber_gets_the_events_and_unsubscribe_stops_them(api: LamaCleanerClient, recorders):
    submitter, subscriber, quitter = recorders
    # A blocker keeps the node busy while the others subscribe, so they miss nothing of the task.
    blocker = api.submit(png(), mask_png(), model="steps", prompt="steps=1000 10")
    try:
        wait_for(lambda: api.get(blocker["id"])["status"] == "processing", 30, "the blocker to run")
        task = api.submit(png(), mask_png(), model="steps", prompt="steps=4 30", socket_id=submitter.sid)
        assert subscriber.call("subscribe", {"id": task["id"]})["ok"] is True
        assert quitter.call("subscribe", {"id": task["id"]})["ok"] is True
        assert quitter.call("unsubscribe", {"id": task["id"]})["ok"] is True
        assert subscriber.call("subscribe", {"nope": 1})["ok"] is False
    finally:
        api.cancel(blocker["id"])  # a stepping model stops between steps; the subscribed task runs next
    for rec in (submitter, subscriber):
        wait_for(
            lambda rec=rec: any(e["status"] == "completed" for e in rec.for_task(task["id"])), 30, "the completed event"
        )
        _assert_ordered(rec.for_task(task["id"]), task["id"])
    assert [e["status"] for e in subscriber.for_task(task["id"])][0] == "processing"
    quitter.round_trip()
    assert quitter.for_task(task["id"]) == []
    assert submitter.for_task(blocker["id"]) == [] and subscriber.for_task(blocker["id"]) == []


def test_cancel_is_announced_to_the_submitter(api: LamaCleanerClient, recorders):
    submitter, bystander, _ = recorders
    task = api.submit(png(), mask_png(), model="steps", prompt="steps=200 50", socket_id=submitter.sid)
    wait_for(lambda: any(e["status"] == "processing" for e in submitter.for_task(task["id"])), 30, "processing")
    api.cancel(task["id"])
    wait_for(lambda: any(e["status"] == "cancelled" for e in submitter.for_task(task["id"])), 30, "the cancelled event")
    statuses = [e["status"] for e in submitter.for_task(task["id"])]
    assert statuses[-1] == "cancelled" and "completed" not in statuses
    bystander.round_trip()
    assert bystander.for_task(task["id"]) == []
