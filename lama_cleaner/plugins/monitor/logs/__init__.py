"""Logs through loguru in every process role, with each line about a task carrying the task's context.

``setup_logging(role, config)`` once per process (web server, scheduler, node, inference child, batch);
``task_context(...)`` around work on one task; or, from code that uses the standard library's ``logging``
(ours, and every library), ``extra={"task_id": ..., "queue": ..., "node": ..., "attempt": ...}``.
"""

from .context import TASK_FIELDS, task_context
from .setup import log_file_path, setup_logging, shutdown_logging

__all__ = ["TASK_FIELDS", "log_file_path", "setup_logging", "shutdown_logging", "task_context"]
