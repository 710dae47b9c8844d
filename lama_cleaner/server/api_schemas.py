"""Marshmallow schemas of ``/api/v1``: they validate what comes in and shape what goes out.

The same classes feed the OpenAPI document (``api_docs.py``), so the published description cannot
drift from what the code checks. The 34 ``/inpaint`` form fields are not retyped here: they are
derived from ``InpaintRequest`` (its form keys and its lenient parsers), so the API accepts exactly
what the classic route accepts, and validation errors read the same.

Timestamps leave the API in one representation only: ISO 8601 in UTC with milliseconds and a ``Z``
(``2026-11-29T07:20:00.123Z``), or ``null`` when the moment has not happened yet.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import fields as dc_fields
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from ..errors import ClientError
from ..inpaint_request import (
    CV2_FLAGS,
    HD_STRATEGIES,
    LDM_SAMPLERS,
    SD_SAMPLERS,
    InpaintRequest,
    parse_bool,
    parse_float,
    parse_int,
    parse_str,
)
from ..tasks import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, TASK_STATES

MAX_PAGE = 200
DEFAULT_PAGE = 50
NODE_STATES = ("idle", "busy", "draining", "offline")

# ---------------------------------------------------------------------------------------------- fields


def iso_timestamp(value: Any) -> str | None:
    """Epoch seconds (or an ISO string, kept) -> ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    moment = _dt.datetime.fromtimestamp(float(value), tz=_dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Timestamp(fields.Field):
    """Dump-only: epoch float -> ISO 8601 UTC string (the one time format of the API)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso_timestamp(value)


class FormValue(fields.Field):
    """A multipart text field parsed by one of ``inpaint_request``'s lenient parsers.

    Using the classic route's parsers keeps the two edges identical (``"5.0"`` is an int, ``False``
    is a bool) and gives the same error text (``Invalid value for ldmSteps: x``).
    """

    def __init__(self, parser: Callable[[str, str], Any], form_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parser = parser
        self.form_key = form_key

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        try:
            return self.parser(str(value), self.form_key)
        except ClientError as exc:
            raise ValidationError(exc.message) from None


class FormInt(FormValue):
    pass


class FormFloat(FormValue):
    pass


class FormBool(FormValue):
    pass


class FormStr(FormValue):
    pass


class Upload(fields.Field):
    """A multipart file part; loaded from ``request.files`` into its bytes."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        read = getattr(value, "read", None)
        if read is None:
            raise ValidationError("Expected a file upload.")
        return read()


OPENAPI_FIELD_TYPES: dict[type, tuple[str, str | None]] = {
    FormInt: ("integer", None),
    FormFloat: ("number", None),
    FormBool: ("boolean", None),
    FormStr: ("string", None),
    Upload: ("string", "binary"),
    Timestamp: ("string", "date-time"),
}
"""How the custom fields above appear in OpenAPI (registered with apispec's MarshmallowPlugin)."""

_PARSER_FIELD: dict[Any, type[FormValue]] = {
    parse_int: FormInt,
    parse_float: FormFloat,
    parse_bool: FormBool,
    parse_str: FormStr,
}
_ENUMS: dict[str, tuple[str, ...]] = {
    "ldmSampler": LDM_SAMPLERS,
    "hdStrategy": HD_STRATEGIES,
    "sdSampler": SD_SAMPLERS,
    "cv2Flag": CV2_FLAGS,
}


def inpaint_form_fields() -> dict[str, fields.Field]:
    """One marshmallow field per ``/inpaint`` form key, all optional (defaults are filled in later)."""
    from ..client import FRONTEND_DEFAULTS  # the 1.2.5 front end's values, shared with the Python client

    out: dict[str, fields.Field] = {}
    for f in dc_fields(InpaintRequest):
        key = f.metadata["form"]
        parser = f.metadata["parser"]
        field_cls = _PARSER_FIELD.get(parser, FormStr)
        meta: dict[str, Any] = {"description": f"`/inpaint` field `{key}` (default `{FRONTEND_DEFAULTS[key]}`)."}
        if key in _ENUMS:
            meta["enum"] = list(_ENUMS[key])
        out[key] = field_cls(parser, key, required=False, metadata=meta)
    return out


# ---------------------------------------------------------------------------------------------- requests


class TaskSubmitSchema(Schema):
    """``POST /api/v1/tasks`` multipart body: ``/inpaint`` (default) or ``/run_plugin`` (with ``plugin``).

    Missing ``/inpaint`` fields take the 1.2.5 front end's defaults (HD settings per model, contract
    §11.2). Unknown keys are kept and forwarded: image plugins read their own fields (``upscale``,
    ``clicks``, ``filename``).
    """

    class Meta:
        unknown = INCLUDE

    model = fields.String(
        required=False,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Model to inpaint with; default: the server's current model (`GET /model`)."},
    )
    plugin = fields.String(
        required=False,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Run this image plugin (as `/run_plugin` `name`) instead of inpainting."},
    )
    image = Upload(required=True, metadata={"description": "The source image (any format Pillow reads)."})
    mask = Upload(required=False, metadata={"description": "Mask, white = erase; required unless `plugin` is set."})
    paintByExampleImage = Upload(required=False, metadata={"description": "Example image for paint_by_example."})
    clean_img = Upload(required=False, metadata={"description": "MakeGIF: the cleaned render."})
    upscale = FormFloat(parse_float, "upscale", required=False, metadata={"description": "RealESRGAN: 2 or 4."})
    clicks = fields.String(required=False, metadata={"description": "InteractiveSeg: JSON `[[x, y, label, i], ...]`."})
    filename = fields.String(required=False, metadata={"description": "MakeGIF: name for Content-Disposition."})
    priority = fields.Integer(
        required=False,
        validate=validate.Range(
            min=MIN_PRIORITY,
            max=MAX_PRIORITY,
            error=f"must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, got {{input}}",
        ),
        error_messages={"invalid": f"must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}"},
        metadata={
            "description": (
                f"Dispatch priority {MIN_PRIORITY}-{MAX_PRIORITY}, higher first (default {DEFAULT_PRIORITY}, what "
                "`/inpaint` uses). Strict: lower priorities wait while higher ones are queued for the same "
                "queue, so use low values for background batches."
            ),
            "default": DEFAULT_PRIORITY,
        },
    )


def _with_inpaint_fields(schema_cls: type[Schema]) -> type[Schema]:
    """Attach the 34 generated ``/inpaint`` fields to ``schema_cls`` (marshmallow declares by class)."""
    return schema_cls.from_dict(inpaint_form_fields(), name="TaskSubmit")


class TaskListQuerySchema(Schema):
    """``GET /api/v1/tasks`` query string."""

    status = fields.String(
        required=False,
        validate=validate.OneOf(TASK_STATES),
        metadata={"description": "Only tasks in this state."},
    )
    limit = fields.Integer(
        required=False,
        load_default=DEFAULT_PAGE,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": f"Page size (1-{MAX_PAGE})."},
    )
    offset = fields.Integer(
        required=False,
        load_default=0,
        validate=validate.Range(min=0, max=2**31 - 1),
        metadata={"description": "Tasks to skip (newest first)."},
    )


# ---------------------------------------------------------------------------------------------- responses


class OpenSchema(Schema):
    """Response objects may carry fields a newer backend added: documented as open objects."""

    class Meta:
        unknown = INCLUDE


class TaskLinksSchema(OpenSchema):
    self_ = fields.String(data_key="self", metadata={"description": "This task."})
    result = fields.String(metadata={"description": "Its result image (when completed)."})


class TaskSchema(OpenSchema):
    """One task, as ``GET /api/v1/tasks/{id}`` reports it."""

    id = fields.String(required=True, metadata={"description": "Opaque task id."})
    kind = fields.String(required=True, validate=validate.OneOf(("inpaint", "plugin")))
    name = fields.String(required=True, metadata={"description": "Model (inpaint) or image plugin (plugin) name."})
    status = fields.String(required=True, validate=validate.OneOf(TASK_STATES))
    queue = fields.String(allow_none=True, metadata={"description": "Queue the task was routed to."})
    node = fields.String(allow_none=True, metadata={"description": "Node running (or that ran) it."})
    progress = fields.Float(allow_none=True, metadata={"description": "Percent done, 0-100."})
    attempts = fields.Integer(metadata={"description": "Attempts started so far."})
    max_attempts = fields.Integer(metadata={"description": "Attempts allowed before the task fails for good."})
    priority = fields.Integer(
        metadata={"description": f"Dispatch priority {MIN_PRIORITY}-{MAX_PRIORITY}, higher first (5 = default)."}
    )
    created_at = Timestamp(allow_none=True, metadata={"description": "When it was accepted (ISO 8601, UTC)."})
    started_at = Timestamp(allow_none=True, metadata={"description": "When its latest attempt started."})
    finished_at = Timestamp(allow_none=True, metadata={"description": "When it reached a final state."})
    position = fields.Integer(
        allow_none=True,
        metadata={
            "description": "0-based place in its queue's dispatch order (priority, then FIFO) while queued, else null."
        },
    )
    error = fields.String(allow_none=True, metadata={"description": "Why it failed (failed tasks only)."})
    traceback = fields.String(
        allow_none=True,
        metadata={"description": "Failed attempt's traceback (GET of one failed task; distributed.expose_tracebacks)."},
    )
    links = fields.Nested(TaskLinksSchema)


class TaskPageSchema(OpenSchema):
    """A page of ``GET /api/v1/tasks``."""

    tasks = fields.List(fields.Nested(TaskSchema), required=True)
    total = fields.Integer(required=True, metadata={"description": "Tasks matching the filter, all pages."})
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    next = fields.String(allow_none=True, metadata={"description": "URL of the next page, null on the last."})


class QueueSchema(OpenSchema):
    """One queue of the scheduler."""

    name = fields.String(required=True)
    endpoint = fields.String(allow_none=True, metadata={"description": "ZeroMQ endpoint nodes connect to."})
    queued = fields.Integer(metadata={"description": "Tasks waiting."})
    processing = fields.Integer(metadata={"description": "Tasks running."})
    nodes = fields.Dict(
        keys=fields.String(), values=fields.Raw(), metadata={"description": "Node counts by state (idle, busy...)."}
    )


class QueueListSchema(OpenSchema):
    queues = fields.List(fields.Nested(QueueSchema), required=True)


class NodeSchema(OpenSchema):
    """One node known to the scheduler."""

    id = fields.String(required=True)
    name = fields.String(allow_none=True)
    state = fields.String(validate=validate.OneOf(NODE_STATES), metadata={"description": "/".join(NODE_STATES)})
    capabilities = fields.Dict(metadata={"description": "device, gpu_name, gpu_memory_mb, ram_mb, cpus, models..."})
    queues = fields.List(fields.String(), metadata={"description": "Queues it joined."})
    current_task = fields.String(allow_none=True, metadata={"description": "Task it is running, if busy."})
    tasks = fields.List(fields.String(), metadata={"description": "Every task it holds, oldest first."})
    slots = fields.Integer(metadata={"description": "How many tasks it may hold at once (its pipeline depth)."})
    loaded_model = fields.String(allow_none=True, metadata={"description": "Model held in memory."})
    last_heartbeat = Timestamp(allow_none=True, metadata={"description": "Last sign of life (ISO 8601, UTC)."})


class NodeListSchema(OpenSchema):
    nodes = fields.List(fields.Nested(NodeSchema), required=True)


class HealthSchema(OpenSchema):
    """``GET /api/v1/health``: whether this server can still serve tasks (200) or not (503)."""

    status = fields.String(required=True, validate=validate.OneOf(("ok", "unavailable")))
    reason = fields.String(metadata={"description": "Why it is unavailable (`unavailable` only)."})
    scheduler = fields.String(
        validate=validate.OneOf(("embedded", "external")),
        metadata={"description": "Where the task scheduler runs (distributed plugin only)."},
    )
    scheduler_running = fields.Boolean(metadata={"description": "The scheduler answered just now."})
    nodes_online = fields.Integer(metadata={"description": "Nodes connected and not offline (status `ok`)."})
    nodes = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "Node counts by state."}
    )


class ErrorBodySchema(OpenSchema):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable name."})
    message = fields.String(required=True, metadata={"description": "Short human-readable text."})


class ErrorSchema(OpenSchema):
    """Every ``/api/v1`` error: ``{"error": {"code": ..., "message": ...}}``."""

    error = fields.Nested(ErrorBodySchema, required=True)


TaskSubmitFormSchema = _with_inpaint_fields(TaskSubmitSchema)
"""The full submit schema: the declared fields above plus the 34 ``/inpaint`` keys."""


def dump_with_extras(schema: Schema, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Dump the documented fields through ``schema`` and keep any extra keys the backend reported.

    Backends (scheduler versions, plugins) may add fields; passing them through costs nothing and
    the documented ones still have one shape (e.g. timestamps in ISO 8601).
    """
    out = {k: v for k, v in raw.items() if k not in schema.fields}
    out.update(schema.dump(raw))
    return out
