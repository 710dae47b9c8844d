"""Where the task path's lines go: the standard library's ``logging``, or loguru directly.

The task path writes three lines or more per task in the scheduler's process, where each microsecond is
taken from dispatch. Through the standard library and the loguru bridge a line costs about twice what a
direct loguru call does (a ``LogRecord``, the bridge's copy of it, then loguru's own record), so once the
monitor has set up loguru in a process the path writes to loguru itself. Before that (and in tests that
read ``caplog``), it writes to the standard-library logger ``lama_cleaner.tasks``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from loguru import logger

from .line_budget import LineBudget

TASK_LOGGER = "lama_cleaner.tasks"


class PathLines(Protocol):
    """A destination for task-path lines."""

    def enabled(self, level: int, routine: bool = True) -> bool:
        """Whether a line at ``level`` (a ``logging`` level number) is to be written: skip building it if not.
        A ``routine`` line (accepted, started, completed) may be left out under a flood (``line_budget.py``);
        a yes is a promise to write it."""

    def write(self, level: int, message: str, context: dict[str, Any]) -> None:
        """Write ``message`` (already formatted) with the task ``context`` (``task_id``, ``queue``, ...)."""


class StandardLines:
    """Lines on a standard-library logger, the context as the record's ``extra``."""

    def __init__(self, target: logging.Logger | None = None) -> None:
        self.target = target or logging.getLogger(TASK_LOGGER)

    def enabled(self, level: int, routine: bool = True) -> bool:
        return self.target.isEnabledFor(level)

    def write(self, level: int, message: str, context: dict[str, Any]) -> None:
        self.target.log(level, "%s", message, extra=context)


class LoguruLines:
    """Lines straight to loguru, named ``lama_cleaner.tasks`` like the standard-library ones, the context in
    the record's ``extra`` (where the monitor's formats read it).

    ``min_level`` is the process's configured level: below it a line is not even formatted. ``budget`` (the
    process's, shared with the standard-library bridge) limits routine lines below WARNING.
    """

    def __init__(self, min_level: int, name: str = TASK_LOGGER, budget: LineBudget | None = None) -> None:
        self.min_level = min_level
        self.name = name
        self.budget = budget
        self._logger = logger.patch(self._name_record)
        self._levels: dict[int, str | int] = {}

    def _name_record(self, record: Any) -> None:
        record["name"] = self.name

    def _level(self, level: int) -> str | int:
        name = self._levels.get(level)
        if name is None:
            name = logging.getLevelName(level)
            try:
                logger.level(name)
            except (ValueError, TypeError):  # a level loguru does not know by name: keep the number
                name = level
            self._levels[level] = name
        return name

    def enabled(self, level: int, routine: bool = True) -> bool:
        if level < self.min_level:
            return False
        return not routine or level >= logging.WARNING or self.budget is None or self.budget.allow()

    def write(self, level: int, message: str, context: dict[str, Any]) -> None:
        # No format arguments: loguru then leaves the message as it is (braces in an error stay braces).
        self._logger.bind(**context).log(self._level(level), message)
