"""With API tokens configured the monitor's figures are an operator's: /metrics, /api/v1/metrics, the history,
the dashboard's Socket.IO feed and a standalone scheduler's metrics port all need a token with the ``metrics``
(or ``admin``) scope, exactly as /api/v1 does; the page itself holds no figures and stays readable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.waiting import wait_for

from .deployment import Deployment

pytestmark = pytest.mark.slow

SECRETS = {"ops": "ops-metrics-0123456789", "alice": "alice-tasks-0123456789", "root": "root-admin-0123456789"}
TOKENS = {
    "ops": {"token": SECRETS["ops"], "scopes": ["metrics"]},
    "alice": {"token": SECRETS["alice"], "scopes": ["tasks"]},
    "root": {"token": SECRETS["root"], "scopes": ["admin"]},
}
PATHS = ("/metrics", "/api/v1/metrics", "/api/v1/metrics/history")


def _bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, standalone=True, extra={"server": {"tokens": TOKENS}})
    try:
        yield dep.start()
    finally:
        dep.stop()
        print(dep.outputs())


def test_every_door_to_the_figures_needs_the_metrics_scope(deployment: Deployment) -> None:
    for base in (deployment.url, deployment.scheduler_metrics_url):
        for path in PATHS:
            url = base + path
            anonymous = requests.get(url, timeout=10)
            assert anonymous.status_code == 401, (url, anonymous.text)
            assert "bearer token" in anonymous.text and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
            unknown = requests.get(url, headers={"Authorization": "Bearer not-a-token-of-ours"}, timeout=10)
            assert unknown.status_code == 401 and "Unknown API token" in unknown.text, (url, unknown.text)
            wrong_scope = requests.get(url, headers=_bearer("alice"), timeout=10)
            assert wrong_scope.status_code == 403 and "'metrics' scope" in wrong_scope.text, (url, wrong_scope.text)
            for who in ("ops", "root"):  # the scope itself, and admin, which implies it
                allowed = requests.get(url, headers=_bearer(who), timeout=10)
                assert allowed.status_code == 200, (url, who, allowed.text)
        figures = requests.get(base + "/metrics", headers=_bearer("ops"), timeout=10).text
        assert "lama_cleaner_scheduler_up" in figures
    page = requests.get(deployment.url + "/monitor", timeout=10)
    assert (
        page.status_code == 200
        and "pageToken" in requests.get(deployment.url + "/monitor/static/monitor.js", timeout=10).text
    )  # the page reads the token from its #fragment and sends it on


def test_the_live_feed_needs_the_token_too(deployment: Deployment) -> None:
    import socketio

    snapshots: dict[str, list[dict]] = {"anonymous": [], "alice": [], "ops": []}
    clients = {name: socketio.Client() for name in snapshots}
    acks: dict[str, dict] = {}
    try:
        for name, client in clients.items():
            client.on("monitor_snapshot", lambda doc, n=name: snapshots[n].append(doc))
            client.connect(deployment.url, transports=["websocket"])
            data = {"token": SECRETS[name]} if name in SECRETS else {}
            acks[name] = client.call("monitor_subscribe", data, timeout=10)
        assert acks["anonymous"]["ok"] is False and "bearer token" in acks["anonymous"]["error"]
        assert acks["alice"]["ok"] is False and "'metrics' scope" in acks["alice"]["error"]
        assert acks["ops"] == {"ok": True}
        wait_for(lambda: len(snapshots["ops"]) >= 2, 30, "two pushed documents at the subscriber with a token")
        assert "queues" in snapshots["ops"][0]
        assert snapshots["anonymous"] == [] and snapshots["alice"] == [], "a refused page must get no figures"
    finally:
        for client in clients.values():
            client.disconnect()
