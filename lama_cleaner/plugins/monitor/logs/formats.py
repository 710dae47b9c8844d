"""The two line formats: readable text (the default) and one JSON object a line (``log_format = "json"``).

Both are loguru "dynamic formats": a function of the record returning the template loguru fills in. The
rendered text goes into the record's ``extra`` and the template only references it, so nothing in a message
(braces, angle brackets) is ever read as a format field or colour markup.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from .context import TASK_FIELDS

_SHORT = {"task_id": "task", "queue": "queue", "node": "node", "attempt": "attempt"}
_INTERNAL = frozenset({"role", *TASK_FIELDS})

TEXT_TEMPLATE = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> <cyan>{extra[role]}</cyan> "
    "{name}: <level>{message}</level>{extra[_context]}\n{exception}"
)


def text_format(record: dict[str, Any]) -> str:
    """``2024-05-01 12:00:00.123 INFO    scheduler lama_cleaner.x: dispatched [task=… queue=gpu node=n1]``."""
    extra = record["extra"]
    context = " ".join(f"{_SHORT[k]}={extra[k]}" for k in TASK_FIELDS if extra.get(k) is not None)
    extra["_context"] = f" [{context}]" if context else ""
    return TEXT_TEMPLATE


def json_format(record: dict[str, Any]) -> str:
    """One JSON object: time, level, message, role, logger, the task fields, origin, exception, other extras."""
    record["extra"]["_json"] = json.dumps(json_fields(record), default=str, ensure_ascii=False)
    return "{extra[_json]}\n"


def json_fields(record: dict[str, Any]) -> dict[str, Any]:
    extra = record["extra"]
    out: dict[str, Any] = {
        "time": record["time"].isoformat(timespec="milliseconds"),
        "level": record["level"].name,
        "message": record["message"],
        "role": extra.get("role"),
        "logger": record["name"],
    }
    for key in TASK_FIELDS:
        if extra.get(key) is not None:
            out[key] = extra[key]
    out["function"] = record["function"]
    out["line"] = record["line"]
    out["pid"] = record["process"].id
    out["thread"] = record["thread"].name
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        # Plain traceback: never variable values (those are what loguru's ``diagnose`` adds to text lines).
        out["exception"] = {
            "type": exception.type.__name__,
            "message": str(exception.value),
            "traceback": "".join(traceback.format_exception(exception.type, exception.value, exception.traceback)),
        }
    others = {k: v for k, v in extra.items() if k not in _INTERNAL and not k.startswith("_")}
    if others:
        out["extra"] = others
    return out
