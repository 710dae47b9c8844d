"""Socket.IO against a real server with real python-socketio clients: events of a request tied to a
socket reach that client only; a request tied to none broadcasts its step events, as upstream did."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
import socketio

from tests.support.waiting import wait_for

from .media_helpers import image_bytes, mask_bytes, post_inpaint


class RecordingClient:
    """A connected client that records every event it receives."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._record)
        self.sio.connect(url, transports=["websocket"], wait_timeout=10)  # no long-poll to wait out on close

    def _record(self, event: str, *args: object) -> None:
        with self._lock:
            self.events.append((event, args[0] if args else None))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.events]

    def payloads(self, name: str) -> list[object]:
        with self._lock:
            return [payload for event, payload in self.events if event == name]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def round_trip(self) -> None:
        """An acknowledged call: events the server emitted to us before it are delivered by now."""
        assert self.sio.call("whoami", timeout=10)["sid"] == self.sid

    @property
    def sid(self) -> str:
        return self.sio.get_sid("/")

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture(scope="module")
def connected(classic_server) -> Iterator[tuple[RecordingClient, RecordingClient]]:
    """Two clients for the whole module (closing a client takes seconds, connecting does not)."""
    a, b = RecordingClient(classic_server.url), RecordingClient(classic_server.url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def clients(connected) -> tuple[RecordingClient, RecordingClient]:
    """The two clients with empty event logs (anything earlier was delivered before the round trips)."""
    for client in connected:
        client.round_trip()
        client.clear()
    return connected


def test_finish_and_status_go_to_the_submitter_named_by_header(classic_server, clients):
    a, b = clients
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), headers={"X-Socket-ID": a.sid})
    assert response.status_code == 200, response.text
    wait_for(lambda: "diffusion_finish" in a.names(), 10, "diffusion_finish at the submitter")
    statuses = [p["status"] for p in a.payloads("task_status")]  # type: ignore[index]
    assert "completed" in statuses, a.events
    a.round_trip()
    b.round_trip()
    assert b.events == [], f"a second client must not see another user's events: {b.events}"


def test_submitter_found_through_the_engineio_cookie(classic_server, clients):
    a, b = clients
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), cookies={"io": a.sio.eio.sid})
    assert response.status_code == 200
    wait_for(lambda: "diffusion_finish" in a.names(), 10, "diffusion_finish via the io cookie")
    b.round_trip()
    assert b.events == []


def test_unknown_submitter_gets_no_broadcast(classic_server, clients):
    a, b = clients
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), headers={"X-Socket-ID": "not-a-sid"})
    assert response.status_code == 200
    a.round_trip()
    b.round_trip()
    assert a.events == [] and b.events == []


def test_failed_inpaint_emits_no_finish(classic_server, clients):
    a, _ = clients
    response = post_inpaint(classic_server.url, image_bytes(64, 48), mask_bytes(8, 8), headers={"X-Socket-ID": a.sid})
    assert response.status_code == 400
    a.round_trip()
    assert "diffusion_finish" not in a.names()


def test_subscribe_and_unsubscribe_acknowledge(classic_server, clients):
    a, _ = clients
    assert a.sio.call("subscribe", {"id": "abc123"}, timeout=10) == {"ok": True, "room": "task:abc123"}
    assert a.sio.call("unsubscribe", {"id": "abc123"}, timeout=10) == {"ok": True, "room": "task:abc123"}
    bad = a.sio.call("subscribe", {"nope": 1}, timeout=10)
    assert bad["ok"] is False


def test_engineio_handshake_sets_the_io_cookie(classic_server):
    """Browsers then send ``io=<engine.io sid>`` with every fetch, which identifies the submitter."""
    import json

    response = requests.get(
        classic_server.url + "/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers={"Origin": "http://elsewhere.test"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://elsewhere.test"  # cors_allowed_origins="*"
    handshake = json.loads(response.text[1:])  # engine.io "open" packet: "0{...}"
    assert response.cookies.get("io") == handshake["sid"]
    assert "SameSite=Lax" in response.headers["Set-Cookie"]


def test_step_progress_goes_to_the_submitter_only(shared_servers):
    """A model that reports steps (like the SD family) drives ``diffusion_progress`` for its submitter."""
    server = shared_servers.get("--plugins", "tests.support.fake_models", model="steps")
    a, b = RecordingClient(server.url), RecordingClient(server.url)
    try:
        response = post_inpaint(
            server.url, image_bytes(), mask_bytes(), form={"prompt": "steps=3 5"}, headers={"X-Socket-ID": a.sid}
        )
        assert response.status_code == 200, response.text
        wait_for(lambda: "diffusion_finish" in a.names(), 10, "diffusion_finish after the steps")
        assert a.payloads("diffusion_progress") == [{"step": 0}, {"step": 1}, {"step": 2}]
        assert a.names().index("diffusion_finish") > a.names().index("diffusion_progress")
        b.round_trip()
        assert b.events == []
    finally:
        a.close()
        b.close()


def test_a_request_tied_to_no_socket_broadcasts_progress_and_finish(shared_servers):
    """A script that connects with python-socketio and POSTs ``/inpaint`` separately (no
    ``X-Socket-ID``, no ``io`` cookie) sees the step events, as with 1.2.5: they go to everyone.
    ``task_status`` stays private (nobody asked for it)."""
    server = shared_servers.get("--plugins", "tests.support.fake_models", model="steps")
    a, b = RecordingClient(server.url), RecordingClient(server.url)
    try:
        response = post_inpaint(server.url, image_bytes(), mask_bytes(), form={"prompt": "steps=3 5"})
        assert "Cookie" not in response.request.headers and "X-Socket-ID" not in response.request.headers
        assert response.status_code == 200, response.text
        for client in (a, b):
            wait_for(lambda c=client: "diffusion_finish" in c.names(), 10, "diffusion_finish at every client")
            assert client.payloads("diffusion_progress") == [{"step": 0}, {"step": 1}, {"step": 2}]
            assert client.names().index("diffusion_finish") > max(
                i for i, name in enumerate(client.names()) if name == "diffusion_progress"
            ), "finish comes after the last step"
            assert client.payloads("task_status") == []
    finally:
        a.close()
        b.close()


def test_a_failed_task_reports_failed_to_its_submitter(shared_servers):
    """The ``failed`` ``task_status`` event, with the error, and no ``diffusion_finish``."""
    server = shared_servers.get("--plugins", "tests.support.fake_models", model="fail")
    a, b = RecordingClient(server.url), RecordingClient(server.url)
    try:
        response = post_inpaint(
            server.url, image_bytes(), mask_bytes(), form={"prompt": "kaboom"}, headers={"X-Socket-ID": a.sid}
        )
        assert response.status_code == 500 and "kaboom" in response.text
        failed = wait_for(
            lambda: [p for p in a.payloads("task_status") if p["status"] == "failed"],  # type: ignore[index]
            10,
            "a failed task_status at the submitter",
        )
        assert len(failed) == 1 and "kaboom" in failed[0]["error"]  # type: ignore[index]
        assert set(failed[0]) >= {"id", "status", "progress", "queue", "node", "error"}  # type: ignore[arg-type]
        a.round_trip()
        b.round_trip()
        assert "diffusion_finish" not in a.names()
        assert b.events == [], "another client sees nothing of it"
    finally:
        a.close()
        b.close()
