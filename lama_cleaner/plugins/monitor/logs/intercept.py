"""Standard-library ``logging`` -> loguru: our modules, Werkzeug, APScheduler and every other library.

One handler on the root logger re-logs each record through loguru, keeping what the record knows: the
logger's name (``lama_cleaner.plugins.distributed.scheduler``, ``werkzeug``), the calling function and
line, the exception, and any ``extra=`` fields (the task context among them).
"""

from __future__ import annotations

import logging
from typing import Any

from loguru import logger

_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class InterceptHandler(logging.Handler):
    """Sends every record it is given to loguru at the same level.

    One loguru call per record, with one patch that sets the origin and merges the record's ``extra`` (a value
    on the line wins over a ``task_context`` block's): this handler is on the path of every standard-library
    line a process writes (a Werkzeug line per request, three task-path lines per task in the scheduler), so it
    builds no more intermediate loggers than it must.
    """

    def __init__(self) -> None:
        super().__init__()
        self._levels: dict[str, str | int] = {}

    def _level(self, record: logging.LogRecord) -> str | int:
        level = self._levels.get(record.levelname)
        if level is None:
            try:
                level = logger.level(record.levelname).name
            except ValueError:  # a custom level loguru does not know: keep its number
                level = record.levelno
            self._levels[record.levelname] = level
        return level

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES}

        def origin(loguru_record: dict[str, Any]) -> None:
            loguru_record.update(name=record.name, function=record.funcName, line=record.lineno, module=record.module)
            if extra:
                loguru_record["extra"].update(extra)

        routed = logger.patch(origin)
        if record.exc_info and record.exc_info[0] is not None:
            routed = routed.opt(exception=record.exc_info)
        routed.log(self._level(record), record.getMessage())


def route_standard_logging(level: int) -> None:
    """Make the intercept handler the only handler, everywhere.

    The root level is the configured one, so a disabled ``log.debug(...)`` costs what it costs without
    loguru (nothing is formatted). Loggers that had handlers of their own lose them and propagate, so
    every line ends up in one place, in one format; Python warnings are logged too.
    """
    logging.basicConfig(handlers=[InterceptHandler()], level=level, force=True)
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger) and existing.handlers:
            existing.handlers.clear()
            existing.propagate = True
    logging.captureWarnings(True)
