"""The autoscale routes in ``/api/v1/openapi.json``: added to the document the API builds, as plain
OpenAPI 3.0 dicts (the shapes are ``Autoscaler.status()`` and ``Outcome.to_dict()``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_NUMBER_OR_NULL = {"type": "number", "nullable": True}

DECISION = {
    "type": "object",
    "required": ["queue", "action", "count", "reason", "at", "drain", "source"],
    "properties": {
        "queue": {"type": "string"},
        "action": {"type": "string", "description": "`scale_up`, `scale_down` or `none`."},
        "count": {"type": "integer"},
        "reason": {"type": "string", "description": "Why, in words (also logged)."},
        "at": {"type": "number", "description": "When, on the autoscaler's clock (compare with `now`)."},
        "drain": {"type": "array", "items": {"type": "string"}, "description": "Nodes chosen to drain."},
        "source": {"type": "string", "description": "`policy` or `manual`."},
        "started": {"type": "object", "additionalProperties": {"type": "integer"}},
        "drained": {"type": "array", "items": {"type": "string"}},
        "shortfall": {"type": "integer"},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
}

QUEUE_STATE = {
    "type": "object",
    "properties": {
        "min_nodes": {"type": "integer"},
        "max_nodes": {"type": "integer"},
        "providers": {"type": "array", "items": {"type": "string"}},
        "nodes": {"type": "integer"},
        "wanted": {"type": "integer"},
        "pending": {"type": "integer"},
        "held": {"type": "string", "description": "What holds the next decision back (window, cooldown, cap)."},
        "last_scale_up": _NUMBER_OR_NULL,
        "last_scale_down": _NUMBER_OR_NULL,
    },
}

STATUS = {
    "type": "object",
    "required": ["now", "interval_s", "queues", "providers", "instances", "decisions", "events", "counters"],
    "properties": {
        "now": {"type": "number"},
        "interval_s": {"type": "number"},
        "queues": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/AutoscaleQueue"}},
        "providers": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"state": {"type": "object"}, "health": {"type": "object"}},
            },
        },
        "instances": {"type": "object"},
        "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/ScalingDecision"}},
        "events": {"type": "array", "items": {"type": "object"}},
        "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
        "last_error": {"type": "string"},
    },
}

SCALE_REQUEST = {
    "type": "object",
    "required": ["nodes"],
    "additionalProperties": False,
    "properties": {
        "nodes": {
            "oneOf": [
                {"type": "string", "pattern": r"^\s*[=+-]?\s*\d+\s*$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "`=N` (exactly N nodes), `+N` (N more) or `-N` (N fewer); an integer means `=N`.",
        }
    },
}

_QUEUE_PARAM = {
    "name": "queue",
    "in": "path",
    "required": True,
    "description": "A queue with an `[autoscale.queues.<queue>]` table.",
    "schema": {"type": "string"},
}


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def add_autoscale_paths(doc: dict[str, Any]) -> None:
    """Add the two operations and their schemas to ``doc`` (the API's OpenAPI document)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ScalingDecision"] = DECISION
    schemas["AutoscaleQueue"] = QUEUE_STATE
    schemas["AutoscaleStatus"] = STATUS
    schemas["ScaleRequest"] = SCALE_REQUEST
    paths = doc.setdefault("paths", {})
    paths["/api/v1/autoscale"] = {
        "get": {
            "operationId": "getAutoscale",
            "summary": "Autoscaler: recent decisions with reasons, per-queue state, providers and instances",
            "responses": {
                "200": {
                    "description": "The autoscaler's state.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AutoscaleStatus"}}},
                },
                "401": _err("Tokens are configured and none (or an unknown one) was sent."),
                "403": _err("The token lacks the `tasks` scope."),
                "503": _err("No autoscaler runs beside the scheduler, or the scheduler did not answer."),
            },
        }
    }
    paths["/api/v1/queues/{queue}/scale"] = {
        "parameters": [_QUEUE_PARAM],
        "post": {
            "operationId": "scaleQueue",
            "summary": "Scale a queue now: `=N`, `+N` or `-N` nodes",
            "description": (
                "A manual decision, carried out like the policy's: nodes start through the queue's providers "
                "with fallback; nodes leave by drain (they finish their task first). The target is kept within "
                "the queue's `min_nodes` and `max_nodes`."
            ),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScaleRequest"}}},
            },
            "responses": {
                "202": {
                    "description": "Carried out: the decision and what it started or drained.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["outcome"],
                                "properties": {"outcome": {"$ref": "#/components/schemas/ScalingDecision"}},
                            }
                        }
                    },
                },
                "400": _err('A body that is not `{"nodes": "=N" | "+N" | "-N"}`.'),
                "401": _err("Tokens are configured and none (or an unknown one) was sent."),
                "403": _err("The token lacks the `admin` scope."),
                "404": _err("The queue is not autoscaled (`unknown_queue`)."),
                "503": _err("No autoscaler runs beside the scheduler, or the scheduler did not answer."),
            },
        },
    }
