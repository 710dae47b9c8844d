"""Standard-library ``logging`` -> loguru: our modules, Werkzeug, APScheduler and every other library.

One handler on the root logger re-logs each record through loguru, keeping what the record knows: the
logger's name (``lama_cleaner.plugins.distributed.scheduler``, ``werkzeug``), the calling function and
line, the exception, and any ``extra=`` fields (the task context among them).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from loguru import logger

from .line_budget import LineBudget

_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class InterceptHandler(logging.Handler):
    """Sends every record it is given to loguru at the same level.

    One loguru call per record through one patched logger made once: its patcher sets the origin and merges
    the record's ``extra`` (a value on the line wins over a ``task_context`` block's), reading the record being
    emitted from a thread-local. This handler is on the path of every standard-library line a process writes
    (a Werkzeug line per request, a node's line per task), so it builds no logger and no closure per line.
    """

    def __init__(self, budget: LineBudget | None = None) -> None:
        super().__init__()
        self.budget = budget
        """Routine per-task lines (below WARNING, with a ``task_id``) spend it; see ``line_budget.py``."""
        self._levels: dict[str, str | int] = {}
        self._emitting = threading.local()
        self._routed = logger.patch(self._origin)

    def _level(self, record: logging.LogRecord) -> str | int:
        level = self._levels.get(record.levelname)
        if level is None:
            try:
                level = logger.level(record.levelname).name
            except ValueError:  # a custom level loguru does not know: keep its number
                level = record.levelno
            self._levels[record.levelname] = level
        return level

    def _origin(self, loguru_record: dict[str, Any]) -> None:
        record: logging.LogRecord | None = getattr(self._emitting, "record", None)
        if record is None:  # not called from emit (cannot happen: the patched logger is private)
            return
        loguru_record.update(name=record.name, function=record.funcName, line=record.lineno, module=record.module)
        fields = record.__dict__
        own = fields.keys() - _STANDARD_ATTRIBUTES  # the line's ``extra=`` keys, usually none
        if own:
            loguru_record["extra"].update({key: fields[key] for key in own})

    def emit(self, record: logging.LogRecord) -> None:
        budget = self.budget
        if budget is not None and record.levelno < logging.WARNING and "task_id" in record.__dict__:
            if not budget.allow():
                return  # counted in the budget's summary line
        routed = self._routed
        if record.exc_info and record.exc_info[0] is not None:
            routed = routed.opt(exception=record.exc_info)
        emitting = self._emitting
        outer = getattr(emitting, "record", None)  # a line logged while formatting another (re-entrant)
        emitting.record = record
        try:
            routed.log(self._level(record), record.getMessage())
        finally:
            emitting.record = outer


def route_standard_logging(level: int, budget: LineBudget | None = None) -> None:
    """Make the intercept handler the only handler, everywhere.

    The root level is the configured one, so a disabled ``log.debug(...)`` costs what it costs without
    loguru (nothing is formatted). Loggers that had handlers of their own lose them and propagate, so
    every line ends up in one place, in one format; Python warnings are logged too.
    """
    logging.basicConfig(handlers=[InterceptHandler(budget)], level=level, force=True)
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger) and existing.handlers:
            existing.handlers.clear()
            existing.propagate = True
    logging.captureWarnings(True)
