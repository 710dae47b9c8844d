"""What the monitor holds in one process, and the rules of who starts what where.

The plugin's hooks (``plugin.py``) are thin; this object decides:

- **logs**: set up at ``startup`` in every role, torn down at ``shutdown`` (standard-library logging then gets
  back the handlers it had, so a line logged after the plugin stopped is not lost);
- **the task path**: every ``task_event`` seen here goes to one :class:`TaskPathLogger`, which writes to
  loguru directly once logging is set up;
- **one runtime per scheduler**: ``scheduler_started`` builds the runtime that owns the alerts (and, in a
  standalone scheduler, serves ``metrics_port``); ``register_routes`` of the web server then installs that
  same runtime when its executor's handle is local (embedded scheduler), or builds one that reads the remote
  scheduler for its page only (``owns_alerts=False``), or one without scheduler figures (classic mode). So an
  embedded scheduler is read by one hub, its finished tasks are counted once and its alerts sent once.

The scheduler handle is used by duck typing (``stats()``, ``local``); nothing here imports the distributed
plugin.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from ...server.auth import load_tokens
from .alerts.sinks import AlertSink
from .config import MonitorConfig
from .logs import setup_logging, shutdown_logging
from .logs.path_lines import LoguruLines
from .logs.setup import LEVEL_NUMBERS
from .logs.task_path import TaskPathLogger
from .runtime import MonitorRuntime

log = logging.getLogger(__name__)

INSTANCE_ROLES = ("node", "inference")
"""Roles with several processes per host: each writes its own file, named by its process id."""

SinksSource = Callable[[Any], Sequence[AlertSink]]


class MonitorProcess:
    """The monitor's state in this process (one instance, held by the plugin module)."""

    def __init__(self) -> None:
        self.role: str | None = None
        self.logging_on = False
        self._saved_logging: tuple[list[logging.Handler], int] | None = None
        self.task_path = TaskPathLogger()
        self._runtimes: list[MonitorRuntime] = []
        self._by_scheduler: dict[int, MonitorRuntime] = {}
        self._unclaimed: MonitorRuntime | None = None  # an embedded scheduler's, until the web routes take it
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ process lifecycle
    def startup(self, config: Any, role: str) -> None:
        cfg: MonitorConfig = config.monitor
        self.role = role
        instance = str(os.getpid()) if role in INSTANCE_ROLES else None
        if self._saved_logging is None:
            self._saved_logging = (list(logging.root.handlers), logging.root.level)
        budget = setup_logging(role, cfg, instance=instance)
        self.logging_on = True
        # Straight to loguru: the path is the monitor's busiest writer (three lines a task in the scheduler).
        lines = LoguruLines(min_level=LEVEL_NUMBERS[cfg.log_level], budget=budget)
        self.task_path = TaskPathLogger(lines, level=LEVEL_NUMBERS[cfg.task_path_level])
        log.debug("monitor: logging set up for role %s", role)

    def shutdown(self) -> None:
        """Stop every runtime, then the logs; safe without a ``startup`` and safe twice."""
        with self._lock:
            runtimes, self._runtimes = self._runtimes, []
            self._by_scheduler.clear()
            self._unclaimed = None
        for runtime in reversed(runtimes):
            try:
                runtime.stop()
            except Exception:  # noqa: BLE001 - shutting down: release the others
                log.exception("monitor: stopping a runtime failed")
        if self.logging_on:
            self.logging_on = False
            shutdown_logging()
            self._give_logging_back()
        self.role = None
        self.task_path = TaskPathLogger()

    def _give_logging_back(self) -> None:
        """The standard-library handlers and level from before ``startup``, and loguru's own standard-error
        sink, so a line logged after the plugin stopped (by another plugin's shutdown) still shows."""
        saved, self._saved_logging = self._saved_logging, None
        for handler in list(logging.root.handlers):
            logging.root.removeHandler(handler)
        if saved is not None:
            for handler in saved[0]:
                logging.root.addHandler(handler)
            logging.root.setLevel(saved[1])
        logging.captureWarnings(False)
        logger.add(sys.stderr)

    # ------------------------------------------------------------------ task path
    def observe(self, event: Any) -> None:
        self.task_path.observe(event)

    # ------------------------------------------------------------------ scheduler and web server
    def scheduler_started(self, handle: Any, config: Any, sinks: SinksSource) -> MonitorRuntime:
        """The runtime that owns this scheduler's alerts; a standalone scheduler also serves ``metrics_port``."""
        cfg: MonitorConfig = config.monitor
        standalone = self.role == "scheduler"
        server = getattr(config, "server", None)  # the [server] table: its tokens guard the metrics port
        tokens = load_tokens(server) if standalone and server is not None else None
        runtime = MonitorRuntime(cfg, handle.stats, owns_alerts=True, extra_sinks=sinks(config), tokens=tokens)
        with self._lock:
            self._runtimes.append(runtime)
            self._by_scheduler[id(handle)] = runtime
            if not standalone:
                self._unclaimed = runtime
        runtime.start(metrics_port=standalone)
        if standalone and runtime.server is not None:
            log.info("monitor: scheduler metrics at %s/metrics", runtime.server.url)
        return runtime

    def scheduler_stopped(self, handle: Any) -> None:
        with self._lock:
            runtime = self._by_scheduler.pop(id(handle), None)
            if runtime is self._unclaimed:
                self._unclaimed = None
        if runtime is not None:
            runtime.stop()

    def register_routes(self, app: Any, socketio: Any, config: Any, executor: Any, sinks: SinksSource) -> None:
        """Serve the figures from this web server, reading the scheduler the executor's handle reaches."""
        cfg: MonitorConfig = config.monitor
        handle = getattr(executor, "scheduler_handle", None)
        with self._lock:
            runtime = self._unclaimed if handle is not None and getattr(handle, "local", False) else None
            self._unclaimed = None
        if runtime is None:
            if handle is not None and getattr(handle, "local", False):
                # An embedded scheduler whose scheduler_started was not seen here: it owns its alerts.
                runtime = MonitorRuntime(cfg, handle.stats, owns_alerts=True, extra_sinks=sinks(config))
            else:
                stats = handle.stats if handle is not None else None  # None: classic mode, no scheduler
                runtime = MonitorRuntime(cfg, stats, owns_alerts=False)
            with self._lock:
                self._runtimes.append(runtime)
            runtime.install(app, socketio)
            runtime.start()
        else:
            runtime.install(app, socketio)  # already started: the live feed starts now
        app.extensions["lama_cleaner_monitor"] = runtime

    def scaling_decision(self, decision: Any) -> None:
        """Count one of the autoscaler's decisions in the runtimes of this process's schedulers (the autoscaler
        runs beside the scheduler, so that is where its decisions are exported)."""
        with self._lock:
            owners = list(self._by_scheduler.values())
        for runtime in owners:
            runtime.hub.record_scale_decision(decision.action, decision.queue)

    def runtimes(self) -> list[MonitorRuntime]:
        with self._lock:
            return list(self._runtimes)
