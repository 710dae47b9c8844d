"""``/api/v1``: the asynchronous task API (submit, poll, fetch, cancel, list; queues and nodes).

It is written against ``tasks.TaskService`` only, so any executor that keeps tasks can serve it (the
``distributed`` plugin's does, and calls :func:`register_api` from its ``register_routes`` hook).
Everything that leaves this blueprint is JSON, errors included: ``{"error": {"code", "message"}}``
with a meaningful status, never an HTML page, also for unknown paths and wrong methods under the
prefix. Input is validated with the marshmallow schemas of ``api_schemas`` that also generate the
OpenAPI document, and with ``pipeline.validate_task`` (the check ``/inpaint`` runs), so a request
that can never succeed is a 400 before anything is queued.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

from ..client import inpaint_form
from ..config import Config
from ..errors import ClientError, LamaCleanerError, NotFound, Overloaded, TaskFailed
from ..models.unsupported import UnsupportedModel
from ..pipeline import validate_task
from ..tasks import DEFAULT_PRIORITY, TaskInfo, TaskRequest, TaskService
from . import api_docs
from .api_schemas import (
    HealthSchema,
    NodeSchema,
    QueueSchema,
    TaskListQuerySchema,
    TaskSchema,
    TaskSubmitFormSchema,
    dump_with_extras,
)
from .auth import ADMIN, TASKS, Caller, current_caller, require_scope
from .draining import draining
from .errors import body_too_large_message
from .notifications import SOCKET_ID_HEADER
from .replies import image_response
from .state import EXTENSION_KEY as SERVER_EXTENSION_KEY
from .state import ServerState

if TYPE_CHECKING:
    from ..image_plugins.registry import ImagePluginRegistry
    from ..models.registry import ModelRegistry
    from .notifications import SocketNotifier

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
EXTENSION_KEY = "lama_cleaner.api_v1"
OPENAPI_EXTENSIONS_KEY = "lama_cleaner.api_v1.openapi"
"""``app.extensions[OPENAPI_EXTENSIONS_KEY]``: callables a plugin that adds routes under ``/api/v1``
appends; each gets the built OpenAPI document (a dict) and adds its paths and schemas to it."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 200
_INPAINT_FILES = ("image", "mask", "paintByExampleImage")
_NOT_FORWARDED = frozenset({"plugin", "priority"})
"""Submit fields the API itself consumes; a plugin's form never sees them."""

blueprint = Blueprint("api_v1", __name__, url_prefix=PREFIX)


@dataclass
class ApiState:
    """What the blueprint serves from, kept on ``app.extensions`` (no module globals)."""

    service: TaskService
    config: Config
    image_plugins: ImagePluginRegistry | None = None
    models: ModelRegistry | None = None
    notifier: SocketNotifier | None = None
    openapi: dict[str, Any] = field(default_factory=dict)


def register_api(app: Flask, service: TaskService, config: Config | None = None) -> None:
    """Serve ``/api/v1`` on ``app`` from ``service``.

    ``config`` and the registries default to the ones the web server keeps on the app (see
    ``server.state``); a bare Flask app (unit tests) gets a default ``Config``.
    """
    server_state: ServerState | None = app.extensions.get(SERVER_EXTENSION_KEY)
    if server_state is None:
        api_state = ApiState(service=service, config=config or Config())
    else:
        api_state = ApiState(
            service=service,
            config=config or server_state.config,
            image_plugins=server_state.image_plugins,
            models=server_state.models,
            notifier=server_state.notifier,
        )
    app.extensions[EXTENSION_KEY] = api_state
    app.register_blueprint(blueprint)


def _api() -> ApiState:
    return current_app.extensions[EXTENSION_KEY]


# ---------------------------------------------------------------------------------------------- errors


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The one error shape of the API."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _validation_message(messages: Any, prefix: str = "") -> str:
    """marshmallow's nested ``{field: [msgs]}`` -> ``field: msg; other: msg``."""
    if isinstance(messages, dict):
        parts = [_validation_message(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}") for k, v in messages.items()]
        return "; ".join(p for p in parts if p)
    if isinstance(messages, list):
        text = " ".join(str(m) for m in messages if not isinstance(m, dict | list))
        nested = [_validation_message(m, prefix) for m in messages if isinstance(m, dict | list)]
        text = " ".join([text, *nested]).strip()
        return f"{prefix}: {text}" if prefix else text
    return f"{prefix}: {messages}" if prefix else str(messages)


@blueprint.errorhandler(ValidationError)
def _on_validation(exc: ValidationError) -> Response:
    return error_response(400, "validation_error", _validation_message(exc.messages) or "Invalid request")


@blueprint.errorhandler(LamaCleanerError)
def _on_lama_error(exc: LamaCleanerError) -> Response:
    if isinstance(exc, Overloaded):  # ShuttingDown too: no log line per refusal
        return error_response(503, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, TaskFailed):
        # Asking for the result of a failed task is a conflict with the task's state, not a server
        # error of this request: 409 + code "task_failed" + the failure text.
        return error_response(409, "task_failed", exc.message)
    if exc.status >= 500:
        log.warning("api request failed: %s (%s)", exc.message, exc.code)
    return error_response(exc.status, exc.code, exc.message, getattr(exc, "headers", None))


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _http_error_response(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status) or (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    message = exc.description or exc.name or "Error"
    if status == 400 and message.startswith("The browser (or proxy) sent a request"):
        message = "The request body could not be parsed"
    if status == 413:
        message = body_too_large_message()
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return error_response(status, code, message, headers)


@blueprint.errorhandler(HTTPException)
def _on_http_error(exc: HTTPException) -> Response:
    return _http_error_response(exc)


@blueprint.errorhandler(Exception)
def _on_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "internal_error", "Internal Server Error")


@blueprint.before_app_request
def _json_routing_errors() -> Response | None:
    """Unknown paths and wrong methods under ``/api/v1`` answer JSON, like everything else there.

    Flask only consults blueprint error handlers for requests routed *into* the blueprint; a routing
    failure has no blueprint yet, so it is caught here, before Flask would raise it.
    """
    exc = request.routing_exception
    if exc is None or not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return None
    if isinstance(exc, RouteNotFound):
        return error_response(404, "not_found", f"No such API endpoint: {request.method} {request.path}")
    if isinstance(exc, MethodNotAllowed):
        return _http_error_response(exc)
    return None


# ---------------------------------------------------------------------------------------------- helpers


def task_url(task_id: str) -> str:
    return f"{PREFIX}/tasks/{task_id}"


def dump_task(info: TaskInfo | dict[str, Any]) -> dict[str, Any]:
    """A ``TaskInfo`` (or its dict) -> the API's task object, with links."""
    raw = asdict(info) if is_dataclass(info) else dict(info)  # type: ignore[arg-type]
    raw.pop("owner", None)  # checked by the routes, not part of the task object
    raw["links"] = {"self_": task_url(raw["id"]), "result": task_url(raw["id"]) + "/result"}
    return dump_with_extras(TaskSchema(), raw)


def _task_response(info: TaskInfo, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(dump_task(info))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _submitter(st: ApiState) -> str | None:
    """The Socket.IO sid behind this request: the server's notifier knows which sids are connected."""
    if st.notifier is not None:
        return st.notifier.submitter_sid()
    sid = (request.headers.get(SOCKET_ID_HEADER) or "").strip()
    return sid or None


def _idempotency_key(caller: Caller) -> str | None:
    """The client's key, scoped to its token: another token's same key must not return that token's
    task (token names hold no ``:``, so two scoped keys never collide)."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ClientError(
            f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} printable characters", code="validation_error"
        )
    return f"{caller.owner}:{key}" if caller.owner else key


def _check_owner(task_id: str, info: TaskInfo | None = None) -> None:
    """Refuse another owner's task as if it did not exist (a ``tasks`` token must not learn which ids
    are in use). Admins and a server without tokens skip the look-up."""
    caller = current_caller(TASKS)
    if caller.sees_every_task:
        return
    info = info if info is not None else _api().service.get(task_id)
    if info.owner != caller.owner:
        raise NotFound(f"Task {task_id} not found")


def build_task_request(st: ApiState) -> TaskRequest:
    """The multipart body -> a validated ``TaskRequest`` (raw strings, as ``/inpaint`` would pass them).

    Typed validation runs through the marshmallow schema; what is forwarded stays the client's own
    strings, so the node parses exactly what the classic route would have parsed.
    """
    if request.mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ClientError("Send the task as multipart/form-data (fields and files like /inpaint)", code="bad_request")
    raw_form = request.form.to_dict(flat=True)
    uploads = {k: v for k, v in request.files.to_dict(flat=True).items() if k}  # a nameless part is no file
    payload: dict[str, Any] = {**raw_form, **uploads}
    loaded = TaskSubmitFormSchema().load(payload)
    # declared uploads were read by the schema; others (a third-party plugin's) are read here
    files = {
        key: loaded[key] if isinstance(loaded.get(key), bytes) else storage.read() for key, storage in uploads.items()
    }
    plugin = loaded.get("plugin")
    model = loaded.get("model")
    priority = loaded.get("priority", DEFAULT_PRIORITY)
    if plugin and model:
        raise ClientError("Give either model (inpaint) or plugin, not both", code="validation_error")
    if plugin:
        form = {k: v for k, v in raw_form.items() if k not in _NOT_FORWARDED}
        form["name"] = plugin  # what /run_plugin receives
        return TaskRequest(kind="plugin", name=plugin, form=form, files=files, priority=priority)
    if "mask" not in files:
        raise ClientError("Missing file: mask", code="validation_error")
    name = model or st.service.current_model()
    form = inpaint_form(name)
    form.update({k: v for k, v in raw_form.items() if k in form})
    files = {k: v for k, v in files.items() if k in _INPAINT_FILES}
    return TaskRequest(kind="inpaint", name=name, form=form, files=files, priority=priority)


def _check_name(st: ApiState, task: TaskRequest) -> None:
    """Unknown model or plugin names are a 400 here (the URL exists; the value is wrong)."""
    if task.kind == "inpaint" and st.models is not None:
        if task.name not in st.models:
            raise ClientError(f"Unknown model: {task.name}", code="unknown_model")
        model_cls = st.models.get(task.name)
        if issubclass(model_cls, UnsupportedModel):
            # runs nowhere, so it would wait in its queue forever; models that only lack something on
            # this web server (torch for lama) are left to the nodes, which may have it
            raise ClientError(model_cls.message(), code="model_not_supported")
    if task.kind == "plugin" and st.image_plugins is not None:
        if task.name not in st.image_plugins:
            raise ClientError("Plugin not found", code="unknown_plugin")


# ---------------------------------------------------------------------------------------------- routes


@blueprint.post("/tasks")
def submit_task() -> Response:
    caller = current_caller(TASKS)
    st = _api()
    task = build_task_request(st)
    _check_name(st, task)
    task.submitter = _submitter(st)
    task.owner = caller.owner
    task.idempotency_key = _idempotency_key(caller)
    try:
        validate_task(task, st.config, st.image_plugins)
    except NotFound as exc:  # unknown plugin: a bad value in the body, not a missing URL
        raise ClientError(exc.message, code="unknown_plugin") from None
    info = st.service.submit(task)
    status = 202 if info.status in ("queued", "processing") else 200
    return _task_response(info, status, {"Location": task_url(info.id)})


@blueprint.get("/tasks")
def list_tasks() -> Response:
    caller = current_caller(TASKS)
    st = _api()
    query = TaskListQuerySchema().load(request.args.to_dict(flat=True))
    status, limit, offset = query.get("status"), query["limit"], query["offset"]
    if caller.sees_every_task:
        tasks, total = st.service.list(status=status, limit=limit, offset=offset)
    else:
        tasks, total = st.service.list(status=status, limit=limit, offset=offset, owner=caller.owner)
        tasks = [t for t in tasks if t.owner == caller.owner]  # also behind a scheduler that ignores owner
    next_url = None
    if offset + len(tasks) < total and tasks:
        params = {k: v for k, v in (("status", status), ("limit", limit), ("offset", offset + len(tasks))) if v}
        next_url = f"{PREFIX}/tasks?{urlencode(params)}"
    # shape of TaskPageSchema (each task already dumped through TaskSchema)
    return jsonify(
        {"tasks": [dump_task(t) for t in tasks], "total": total, "limit": limit, "offset": offset, "next": next_url}
    )


@blueprint.get("/tasks/<task_id>")
def get_task(task_id: str) -> Response:
    current_caller(TASKS)  # a 401 before anything about the task is looked up
    info = _api().service.get(task_id)
    _check_owner(task_id, info)
    return _task_response(info)


@blueprint.delete("/tasks/<task_id>")
def cancel_task(task_id: str) -> Response:
    _check_owner(task_id)
    return _task_response(_api().service.cancel(task_id))


@blueprint.get("/tasks/<task_id>/result")
def task_result(task_id: str) -> Response:
    _check_owner(task_id)
    return image_response(_api().service.result(task_id))


@blueprint.get("/queues")
@require_scope(TASKS)
def list_queues() -> Response:
    return jsonify({"queues": [dump_with_extras(QueueSchema(), q) for q in _api().service.queues()]})


@blueprint.get("/nodes")
@require_scope(TASKS)
def list_nodes() -> Response:
    return jsonify({"nodes": [dump_with_extras(NodeSchema(), n) for n in _api().service.nodes()]})


@blueprint.post("/nodes/<node_id>/drain")
@require_scope(ADMIN)
def drain_node(node_id: str) -> Response:
    """Ask a node to finish its current task and take no more work (scale-in, maintenance)."""
    drain = getattr(_api().service, "drain_node", None)
    if drain is None:  # a TaskService without nodes: no node has this id
        raise NotFound(f"Node {node_id} not found (this server has no nodes)")
    response = jsonify(dump_with_extras(NodeSchema(), drain(node_id)))
    response.status_code = 202
    return response


@blueprint.get("/health")
def health() -> Response:
    """200 ``{"status": "ok", ...}`` while tasks can be served, else 503 ``{"status": "unavailable",
    "reason"}``: without it a server whose embedded scheduler died answers every request 503 and
    nothing restarts it. A service without ``health()`` (no scheduler to lose) is always ok."""
    st = _api()
    check = getattr(st.service, "health", None)
    try:
        report = {"status": "ok"} if check is None else dict(check())
    except Exception as exc:  # noqa: BLE001 - a probe must answer, not 500
        log.exception("health check failed")
        report = {"status": "unavailable", "reason": f"health check failed: {type(exc).__name__}: {exc}"}
    if draining():  # SIGTERM: a load balancer should stop sending work here
        report = {**report, "status": "unavailable", "reason": "the server is shutting down"}
    response = jsonify(dump_with_extras(HealthSchema(), report))
    if report.get("status") != "ok":
        response.status_code = 503
        response.headers["Retry-After"] = str(int(st.config.distributed.retry_after_s))
    response.headers["Cache-Control"] = "no-store"
    return response


def _openapi() -> dict[str, Any]:
    """The OpenAPI document, built on first request (apispec is slow to import and run at start-up)."""
    st = _api()
    if not st.openapi:
        doc = api_docs.build_openapi()
        for extend in current_app.extensions.get(OPENAPI_EXTENSIONS_KEY, ()):
            extend(doc)
        st.openapi = doc
    return st.openapi


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(_openapi())


@blueprint.get("/docs")
def docs_page() -> Response:
    return Response(api_docs.render_html(_openapi()), mimetype="text/html")
