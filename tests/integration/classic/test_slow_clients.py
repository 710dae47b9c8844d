"""The web server under 500 slow or idle connections (half send nothing, half trickle a request one
byte every half second): real /inpaint requests, page loads and a Socket.IO connection are still
served, and the load generator stops by itself. Werkzeug's development server gave each connection
a thread without bound; gunicorn's threaded worker parks idle connections and bounds the rest
(lama_cleaner/server/http_server.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import socketio

from tests.support.server_process import HOST
from tests.support.slow_clients import SlowClients
from tests.support.waiting import wait_for

from .media_helpers import image_bytes, mask_bytes, post_inpaint

pytestmark = pytest.mark.slow

SLOW = 500
REQUEST_TIMEOUT = 30


def test_real_requests_are_served_under_500_slow_connections(server_factory):
    server = server_factory()
    assert "development server" not in server.output()
    load = SlowClients(HOST, server.port, count=SLOW, duration_s=90).start()
    try:
        wait_for(lambda: load.open_now() >= SLOW, 30, f"{SLOW} slow connections to be open")

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            replies = list(
                pool.map(
                    lambda _: post_inpaint(server.url, image_bytes(), mask_bytes(), timeout=REQUEST_TIMEOUT),
                    range(8),
                )
            )
        assert [r.status_code for r in replies] == [200] * 8
        assert requests.get(server.url + "/", timeout=REQUEST_TIMEOUT).status_code == 200
        client = socketio.Client()
        client.connect(server.url, transports=["websocket"], wait_timeout=REQUEST_TIMEOUT)
        assert client.connected
        client.disconnect()
        served_in = time.monotonic() - started

        assert load.open_now() >= SLOW * 0.9, "the slow connections were still there while we were served"
        assert load.stats.bytes_sent > 0
    finally:
        assert load.stop(timeout=30), "the load generator stops by itself"
    assert load.finished and load.open_now() == 0
    assert served_in < 120
    assert requests.get(server.url + "/model", timeout=REQUEST_TIMEOUT).text == "cv2"
