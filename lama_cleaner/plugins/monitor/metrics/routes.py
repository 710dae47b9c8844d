"""``/metrics``, ``/api/v1/metrics`` and ``/api/v1/metrics/history`` on the web server, as one blueprint."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .hub import MetricsHub


def metrics_blueprint(hub: MetricsHub) -> Blueprint:
    """The hub's figures as Prometheus text (or OpenMetrics, if asked) and as JSON."""
    blueprint = Blueprint("monitor_metrics", __name__)

    @blueprint.get("/metrics")
    def exposition() -> Response:
        body, content_type = hub.exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @blueprint.get("/api/v1/metrics")
    def document() -> Response:
        return jsonify(hub.document())

    @blueprint.get("/api/v1/metrics/history")
    def history() -> Response:
        return jsonify({"points": hub.history_points()})

    return blueprint
