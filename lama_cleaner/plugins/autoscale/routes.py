"""``GET /api/v1/autoscale`` and ``POST /api/v1/queues/<queue>/scale``, in the web process.

The autoscaler runs where the scheduler runs; the web server reaches it through the executor's
``scheduler_handle.call(...)`` (the ``scheduler_call`` hook on the other side), so the routes work
the same with an embedded scheduler and with ``--scheduler tcp://...``. Errors are the ``/api/v1``
shape, ``{"error": {"code", "message"}}`` with a 4xx/5xx status:

- 400 ``validation_error``: a body that is not ``{"nodes": "=N" | "+N" | "-N"}``;
- 404 ``unknown_queue``: a queue without an ``[autoscale.queues.<name>]`` table;
- 503 ``autoscale_unavailable``: no scheduler (classic mode), or its process runs no autoscaler.

With ``[server.tokens]`` configured, reading the state needs the ``tasks`` scope (like
``/api/v1/queues``) and scaling needs ``admin`` (like draining a node): 401/403 otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ...errors import LamaCleanerError
from ...server.api_v1 import PREFIX, error_response
from ...server.auth import ADMIN, TASKS, require_scope
from .runtime import SCALE_CALL, STATUS_CALL

log = logging.getLogger(__name__)

EXTENSION_KEY = "lama_cleaner.autoscale"

blueprint = Blueprint("autoscale_api", __name__, url_prefix=PREFIX)


@blueprint.errorhandler(LamaCleanerError)
def _on_lama_error(exc: LamaCleanerError) -> Response:
    """401/403 from ``require_scope`` (with ``WWW-Authenticate``), in the API's shape."""
    return error_response(exc.status, exc.code, exc.message, getattr(exc, "headers", None))


@blueprint.errorhandler(HTTPException)
def _on_http_error(exc: HTTPException) -> Response:
    """JSON like the rest of ``/api/v1``, also where the task API's blueprint is not registered."""
    status = exc.code or 500
    return error_response(status, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")


def register_autoscale_routes(app: Flask, executor: Any) -> None:
    """Serve the routes from ``executor`` (read at request time: its handle may come later)."""
    app.extensions[EXTENSION_KEY] = executor
    app.register_blueprint(blueprint)
    register_openapi(app)


def register_openapi(app: Flask) -> None:
    """Describe the routes in ``/api/v1/openapi.json`` (through the API's document extensions)."""
    from ...server.api_v1 import OPENAPI_EXTENSIONS_KEY
    from .openapi import add_autoscale_paths

    app.extensions.setdefault(OPENAPI_EXTENSIONS_KEY, []).append(add_autoscale_paths)


def _call(name: str, payload: dict[str, Any]) -> Response:
    executor = current_app.extensions.get(EXTENSION_KEY)
    handle = getattr(executor, "scheduler_handle", None)
    if handle is None:
        return error_response(
            503,
            "autoscale_unavailable",
            "autoscaling needs the distributed plugin's scheduler (--plugins distributed,autoscale)",
        )
    try:
        answer = handle.call(name, payload)
    except LookupError:
        return error_response(
            503,
            "autoscale_unavailable",
            "the scheduler's process runs no autoscaler (start it with --plugins distributed,autoscale)",
        )
    except LamaCleanerError as exc:  # the producer client's own errors (scheduler unavailable, ...)
        return error_response(exc.status, exc.code, exc.message)
    except (TimeoutError, ConnectionError, OSError) as exc:
        log.warning("autoscale call %s failed: %s", name, exc)
        return error_response(503, "scheduler_unavailable", f"the scheduler did not answer: {exc}")
    except RuntimeError as exc:  # refused, a scheduler too old for CALL, or the autoscaler raised there
        log.warning("autoscale call %s failed: %s", name, exc)
        return error_response(503, "autoscale_unavailable", str(exc))
    except Exception:  # noqa: BLE001 - the API answers JSON, never an HTML 500
        log.exception("autoscale call %s failed", name)
        return error_response(500, "internal_error", "Internal Server Error")
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        status = int(error.get("status") or 500)
        return error_response(status, str(error.get("code") or "error"), str(error.get("message") or ""))
    return jsonify(answer)


@blueprint.get("/autoscale")
@require_scope(TASKS)
def autoscale_status() -> Response:
    """Decisions with their reasons, per-queue state, providers' state and health, instances."""
    return _call(STATUS_CALL, {})


@blueprint.post("/queues/<queue>/scale")
@require_scope(ADMIN)
def scale_queue(queue: str) -> Response:
    """``{"nodes": "=N" | "+N" | "-N"}`` (or an integer for ``=N``): a manual decision, now."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "nodes" not in body:
        return error_response(400, "validation_error", 'expected a JSON body {"nodes": "=N" | "+N" | "-N"}')
    unknown = sorted(set(body) - {"nodes"})
    if unknown:
        return error_response(400, "validation_error", f"unknown field(s): {', '.join(unknown)}")
    response = _call(SCALE_CALL, {"queue": queue, "nodes": body["nodes"]})
    if response.status_code == 200:
        response.status_code = 202
    return response
