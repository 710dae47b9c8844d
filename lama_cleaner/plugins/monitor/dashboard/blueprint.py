"""The ``/monitor`` blueprint: one page and its static assets, served by our own server only.

The page draws whatever ``/api/v1/metrics`` documents it is given: it fetches the history once, then a new
document every ``poll_ms``, and with ``live`` it also takes the documents pushed over Socket.IO. Nothing is
loaded from another host: the chart library and the Socket.IO client are static files here. The page shows
figures only and offers no actions, so it changes nothing on the server.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template_string, url_for

from .live import SNAPSHOT_EVENT, SUBSCRIBE_EVENT

STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "monitor.html"


def monitor_blueprint(
    *,
    feed_url: str = "/api/v1/metrics",
    history_url: str | None = "/api/v1/metrics/history",
    poll_ms: int = 2000,
    live: bool = False,
) -> Blueprint:
    """A blueprint serving ``/monitor`` and ``/monitor/static/...``.

    ``feed_url`` answers a metrics document, ``history_url`` (optional) ``{"points": [...]}``; ``poll_ms`` is
    how often the page asks (0: never). With ``live`` the page also subscribes over Socket.IO and renders the
    documents a :class:`~.live.LiveFeed` pushes (Socket.IO must be served by the same app).
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
            live=live,
            subscribe_event=SUBSCRIBE_EVENT,
            snapshot_event=SNAPSHOT_EVENT,
        )
        response = Response(html, mimetype="text/html")
        # Only our own origin: scripts, styles, images and fetches (the page never needs another host).
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'"
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    return blueprint
