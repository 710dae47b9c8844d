"""``task_event`` observers run off the I/O path, against a real classic server: a slow observer
(blocked until the test opens its gate) delays no reply and no other observer, Socket.IO clients
included; a raising observer is logged with its plugin name and the task id and keeps receiving
events."""

from __future__ import annotations

import requests

from tests.support.waiting import wait_for

from .media_helpers import image_bytes, mask_bytes, post_inpaint
from .test_classic_socketio import RecordingClient

PLUGINS = "tests.support.slow_observer,tests.support.raising_observer,tests.support.fake_models"


def test_slow_and_raising_observers_delay_nothing(server_factory, tmp_path):
    gate = tmp_path / "gate"
    server = server_factory("--plugins", PLUGINS, model="steps", env={"LAMA_TEST_OBSERVER_GATE": str(gate)})
    client = RecordingClient(server.url)
    try:
        for round_ in (1, 2):
            response = post_inpaint(
                server.url,
                image_bytes(),
                mask_bytes(),
                form={"prompt": "steps=3 5"},
                headers={"X-Socket-ID": client.sid},
                timeout=30,  # the slow observer holds its first event for a minute: a waiting reply fails here
            )
            assert response.status_code == 200, response.text
            wait_for(lambda n=round_: client.names().count("diffusion_finish") == n, 10, "diffusion_finish")
        assert client.payloads("diffusion_progress") == [{"step": s} for s in (0, 1, 2)] * 2
        statuses = client.payloads("task_status")
        task_ids = list(dict.fromkeys(p["id"] for p in statuses))  # type: ignore[index]
        assert len(task_ids) == 2 and [p["status"] for p in statuses].count("completed") == 2  # type: ignore[index]

        slow = requests.get(server.url + "/test-observers/slow", timeout=30).json()["done"]
        assert slow == [], "the slow observer is still held at its gate"
        raising = wait_for(
            lambda: (
                (calls := requests.get(server.url + "/test-observers/raising", timeout=30).json()["calls"])
                and calls.count("completed") == 2
                and calls
            ),
            10,
            "the raising observer to get the second task's completion too",
        )
        assert raising.count("processing") >= 2, raising
        log = server.output()
        for task_id in task_ids:
            assert f"task_event observer tests.support.raising_observer failed for task {task_id}" in log, log[-3000:]

        gate.touch()
        done = wait_for(
            lambda: (
                (d := requests.get(server.url + "/test-observers/slow", timeout=30).json()["done"])
                and sum(1 for e in d if e.endswith(":completed")) == 2
                and d
            ),
            60,
            "the slow observer to catch up once released",
        )
        assert [e.split(":")[0] for e in done if e.endswith(":completed")] == task_ids, "in order, nothing lost"
    finally:
        gate.touch()
        client.close()
