"""The ``/monitor`` blueprint: the page, its settings, its static files and the chart library's licence."""

from __future__ import annotations

import re

from flask import Flask

from lama_cleaner.plugins.monitor.dashboard.blueprint import STATIC, monitor_blueprint


def client(**kwargs):
    app = Flask(__name__)
    app.register_blueprint(monitor_blueprint(**kwargs))
    return app.test_client()


def test_page_names_its_feed_and_only_local_assets() -> None:
    reply = client(feed_url="/custom/feed?x=1&y=2", poll_ms=500).get("/monitor")
    assert reply.status_code == 200 and reply.mimetype == "text/html"
    html = reply.get_data(as_text=True)
    assert 'data-feed="/custom/feed?x=1&amp;y=2"' in html  # escaped as an attribute
    assert 'data-poll-ms="500"' in html
    assert 'data-history="/api/v1/metrics/history"' in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/monitor/static/") or s == "data:," for s in sources), sources
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert client().get("/monitor/").status_code == 200


def test_static_assets_and_licence_are_served() -> None:
    c = client()
    for path in ("monitor.js", "monitor.css", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"):
        reply = c.get(f"/monitor/static/{path}")
        assert reply.status_code == 200, path
        reply.close()
    licence = (STATIC / "vendor" / "uplot" / "LICENSE").read_text()
    assert "MIT License" in licence and "Leon Sorokin" in licence
    assert "v1.6.32" in (STATIC / "vendor" / "uplot" / "uPlot.iife.min.js").read_text()[:80]


def test_script_never_writes_server_values_as_html() -> None:
    script = (STATIC / "monitor.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_live_pages_load_the_vendored_socketio_client_and_subscribe() -> None:
    plain = client().get("/monitor").get_data(as_text=True)
    assert "socket.io" not in plain and "data-subscribe-event" not in plain
    live = client(live=True, poll_ms=0).get("/monitor").get_data(as_text=True)
    assert '<script src="/monitor/static/vendor/socket.io/socket.io.min.js"></script>' in live
    assert 'data-subscribe-event="monitor_subscribe"' in live and 'data-snapshot-event="monitor_snapshot"' in live
    licence = (STATIC / "vendor" / "socket.io" / "LICENSE").read_text()
    assert "MIT License" in licence
    assert "sourceMappingURL" not in (STATIC / "vendor" / "socket.io" / "socket.io.min.js").read_text()
