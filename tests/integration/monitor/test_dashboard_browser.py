"""``/monitor`` in headless Chromium against a tiny app whose feed changes with every document, polled by the
page or pushed to it over Socket.IO.

The page must show numbers that change, a node that goes offline, the failure with its error (as text, not
HTML), the NodeOffline alert, drawn charts; it must ask nothing of any other host and raise no script error.
The test saves a screenshot under ``test-artifacts/``.
"""

from __future__ import annotations

import pytest

from tests.integration.monitor.dashboard_app import ERROR, OFFLINE_AT, ServedApp, make_app
from tests.support.server_process import REPO_ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.mark.parametrize("live", [False, True], ids=["polled", "socketio"])
def test_monitor_page_follows_the_feed(browser, live: bool) -> None:
    app, story = make_app(poll_ms=200, live=live)
    with ServedApp(app) as served:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        requested: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        try:
            page.goto(served.url + "/monitor")
            text = lambda selector: page.locator(selector).inner_text()  # noqa: E731

            seen_queued: set[str] = set()

            def queued_changed() -> bool:
                seen_queued.add(text("#tile-queued"))
                return len(seen_queued - {"–"}) >= 3

            wait_for(queued_changed, timeout=20, message="the queued tile to change while tasks run")
            assert page.locator("#status").get_attribute("data-state") == "live"

            n2_state = page.locator('#nodes tr[data-node="n2"]')
            wait_for(lambda: n2_state.get_attribute("data-state") == "offline", 20, "node n2 to be shown offline")
            assert story.step >= OFFLINE_AT
            assert "offline" in n2_state.inner_text()
            n1 = page.locator('#nodes tr[data-node="n1"]').inner_text()
            assert "busy" in n1 and "cuda:0" in n1 and "lama" in n1 and "%" in n1  # device, model, progress
            assert text("#tile-nodes") == "1 / 2"

            alert = page.locator('#alerts tr[data-alert="NodeOffline"]')
            wait_for(lambda: alert.count() == 1, 20, "the NodeOffline alert on the page")
            assert "node n2 is offline" in alert.inner_text()
            assert int(text("#tile-alerts")) >= 1

            failure = page.locator('#failures tr[data-task="task-failed-0001-abcdef"]')
            wait_for(lambda: failure.count() == 1, 20, "the failed task in recent failures")
            assert ERROR in failure.inner_text()  # shown as text: the <b> in the message is not markup
            assert page.locator("#failures b").count() == 0

            # Throughput and latency tiles have numbers; the three charts are drawn.
            wait_for(lambda: text("#tile-throughput") not in ("–", ""), 20, "a throughput figure")
            assert text("#tile-p95").endswith(" s")
            for chart in ("#chart-depth", "#chart-throughput", "#chart-latency"):
                box = page.locator(f"{chart} canvas").bounding_box()
                assert box is not None and box["width"] > 150 and box["height"] > 100, chart
            points = page.evaluate("window.LamaMonitor.points().length")
            assert points >= 3
            queue_row = page.locator('#queues tr[data-queue="gpu"]').inner_text()
            assert "gpu" in queue_row

            ARTIFACTS.mkdir(exist_ok=True)
            name = "monitor-dashboard-live.png" if live else "monitor-dashboard.png"
            page.screenshot(path=str(ARTIFACTS / name), full_page=True)
        finally:
            page.close()
    assert errors == []
    foreign = [url for url in requested if not url.startswith(served.url + "/")]
    assert foreign == []  # nothing but our own server
    assert any(url.endswith("/monitor/static/vendor/uplot/uPlot.iife.min.js") for url in requested)
    feed_requests = [url for url in requested if url.endswith("/api/v1/metrics")]
    socket_requests = [url for url in requested if "/socket.io/" in url]
    if live:  # pushed, not polled
        assert feed_requests == [] and socket_requests
    else:
        assert len(feed_requests) >= 3 and socket_requests == []
