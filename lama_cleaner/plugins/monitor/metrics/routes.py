"""``/metrics``, ``/api/v1/metrics`` and ``/api/v1/metrics/history`` on the web server, as one blueprint.

With API tokens configured each needs the ``metrics`` scope (or ``admin``): queue depths, node names and
recent errors are an operator's business (docs/security.md#api-tokens)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ....server.auth import METRICS, require_scope
from .hub import MetricsHub


def metrics_blueprint(hub: MetricsHub) -> Blueprint:
    """The hub's figures as Prometheus text (or OpenMetrics, if asked) and as JSON."""
    blueprint = Blueprint("monitor_metrics", __name__)

    @blueprint.get("/metrics")
    @require_scope(METRICS)
    def exposition() -> Response:
        body, content_type = hub.exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @blueprint.get("/api/v1/metrics")
    @require_scope(METRICS)
    def document() -> Response:
        return jsonify(hub.document())

    @blueprint.get("/api/v1/metrics/history")
    @require_scope(METRICS)
    def history() -> Response:
        return jsonify({"points": hub.history_points()})

    return blueprint
