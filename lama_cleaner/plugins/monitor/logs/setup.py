"""Configure loguru for one process role: standard error, optionally a rotated file, and the stdlib bridge."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from loguru import logger

from ..config import MonitorConfig
from .formats import json_format, text_format
from .intercept import route_standard_logging
from .line_budget import LineBudget
from .path_lines import TASK_LOGGER

ROLES = ("serve", "scheduler", "node", "inference", "batch")
LEVEL_NUMBERS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_budgets: list[LineBudget] = []


def log_file_path(log_dir: str, role: str, instance: str | None = None) -> Path:
    """``<dir>/<role>.log``, or ``<dir>/<role>-<instance>.log`` for roles with several processes per host
    (nodes and their inference children, named by node id): one file per process, because loguru's
    rotation is not safe across processes writing the same file."""
    folder = Path(log_dir).expanduser()
    name = role if not instance else f"{role}-{_UNSAFE.sub('_', instance).strip('._') or 'x'}"
    return folder / f"{name}.log"


def setup_logging(
    role: str, config: MonitorConfig, *, instance: str | None = None, stream: TextIO | None = None
) -> LineBudget | None:
    """Replace every loguru and standard-library handler of this process with the configured ones.

    Call once per process, after any fork (a forked child calls it again with its own role). ``stream`` is
    standard error unless given. Tracebacks show variable values only with ``log_diagnose``. Returns the
    process's budget of routine per-task lines (``None``: unlimited), for the task path to share.
    """
    if role not in ROLES:
        raise ValueError(f"unknown process role {role!r}; expected one of {', '.join(ROLES)}")
    formatter = json_format if config.log_format == "json" else text_format
    logger.remove()
    while _budgets:
        _budgets.pop().close()
    logger.configure(extra={"role": role})
    logger.add(
        stream or sys.stderr,
        level=config.log_level,
        format=formatter,
        diagnose=config.log_diagnose,
        backtrace=False,
        colorize=None if config.log_format == "text" else False,  # colours only on a terminal, never in JSON
    )
    if config.log_dir:
        path = log_file_path(config.log_dir, role, instance)
        path.parent.mkdir(parents=True, exist_ok=True)
        logger.add(
            str(path),
            level=config.log_level,
            format=formatter,
            diagnose=config.log_diagnose,
            backtrace=False,
            colorize=False,
            rotation=config.log_rotation,
            retention=config.log_retention,
            compression=config.log_compression,
            enqueue=True,  # file writes and rotation happen on loguru's thread, not on a request's
            encoding="utf-8",
        )
    budget = None
    if config.task_lines_per_s > 0:
        budget = LineBudget(config.task_lines_per_s, _summary_writer(config.task_lines_per_s))
        _budgets.append(budget)
    route_standard_logging(LEVEL_NUMBERS[config.log_level], budget)
    return budget


def _summary_writer(lines_per_s: int) -> Callable[[int, float], None]:
    """The budget's summary line, named like the task path (it is about the path's lines)."""
    named = logger.patch(lambda record: record.update(name=TASK_LOGGER))

    def summarize(left_out: int, span_s: float) -> None:
        named.info(
            f"{left_out} routine task lines (accepted, started, completed) left out over the last {span_s:.1f} s: "
            f"more than {lines_per_s} a second (monitor.task_lines_per_s); failures, retries, re-queues and "
            "cancellations are always written"
        )

    return summarize


def shutdown_logging() -> None:
    """Flush what the file sink still holds (``enqueue``) and close it; call once, at exit."""
    while _budgets:
        _budgets.pop().close()  # its last summary, while the sinks are still there
    logger.complete()
    logger.remove()
