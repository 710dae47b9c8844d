"""The ``/monitor`` blueprint: one page and its static assets, served by our own server only.

The page draws whatever ``/api/v1/metrics`` documents it is given: it fetches the history once, then a new
document every ``poll_ms`` (the plugin may also push documents over Socket.IO, as ``monitor_snapshot``
events; the page takes both). Nothing is loaded from another host: the chart library is a static file here.
The page shows figures only and offers no actions, so it changes nothing on the server.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template_string, url_for

STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "monitor.html"


def monitor_blueprint(
    *,
    feed_url: str = "/api/v1/metrics",
    history_url: str | None = "/api/v1/metrics/history",
    poll_ms: int = 2000,
    socketio_event: str | None = None,
) -> Blueprint:
    """A blueprint serving ``/monitor`` and ``/monitor/static/...``.

    ``feed_url`` answers a metrics document, ``history_url`` (optional) ``{"points": [...]}``; ``poll_ms`` is
    how often the page asks (0: never, when documents arrive over Socket.IO as ``socketio_event``).
    """
    blueprint = Blueprint(
        "monitor_dashboard", __name__, url_prefix="/monitor", static_folder="static", static_url_path="/static"
    )
    template = PAGE.read_text(encoding="utf-8")

    @blueprint.get("/", strict_slashes=False)
    def page() -> Response:
        html = render_template_string(
            template,
            static=url_for("monitor_dashboard.static", filename="").rstrip("/"),
            feed=feed_url,
            history=history_url or "",
            poll_ms=poll_ms,
            socketio_event=socketio_event or "",
        )
        response = Response(html, mimetype="text/html")
        # Only our own origin: scripts, styles, images and fetches (the page never needs another host).
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'"
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    return blueprint
