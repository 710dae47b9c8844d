"""The ``monitor`` plugin (``--plugins distributed,monitor``): its face, hook implementations only.

- ``config_sections``: the ``[monitor]`` section (``config.py``), known even when not enabled.
- ``add_hookspecs``: publishes ``alert_sinks`` (``hookspecs.py``).
- ``add_cli_options``/``configure``: ``--log-json`` and ``--log-dir`` for ``serve``, ``batch``, ``scheduler``
  and ``node``; ``--metrics-port`` for ``scheduler``.
- ``startup``/``shutdown``: loguru logging in every role (``logs/``), torn down at exit.
- ``task_event``: each task's path at INFO (``logs/task_path.py``).
- ``register_routes``: ``/metrics``, ``/api/v1/metrics``, ``/monitor`` and the live feed, reading the
  scheduler through ``executor.scheduler_handle`` (none in classic mode: figures without a scheduler).
- ``scheduler_started``/``scheduler_stopped``: the alert job where the scheduler runs, and a standalone
  scheduler's own metrics port. Declared by the distributed plugin, so optional here: the monitor also loads
  without it (classic mode).
- ``scaling_decision``: counts the autoscaler's decisions where it runs (beside the scheduler); optional, as
  the autoscale plugin declares it.

Who starts what in which process is decided in ``process.py``. Importing this module imports neither loguru
nor prometheus-client: the core imports it on every start to collect config sections.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from ...events import may_lag
from ..hookspecs import hookimpl

optional_hookimpl = functools.partial(hookimpl, optionalhook=True)

LOG_OPTION_COMMANDS = ("serve", "batch", "scheduler", "node")
_DEST_JSON = "monitor_log_json"
_DEST_DIR = "monitor_log_dir"
_DEST_PORT = "monitor_metrics_port"


@functools.cache
def _process() -> Any:
    from .process import MonitorProcess

    return MonitorProcess()


def _extra_sinks(config: Any) -> list[Any]:
    """Sinks other plugins add through the ``alert_sinks`` hook."""
    from ..manager import current_plugin_manager

    hook = getattr(current_plugin_manager().hook, "alert_sinks", None)
    if hook is None:
        return []
    return [sink for sinks in hook(config=config) for sink in sinks or ()]


@hookimpl
def add_hookspecs(pluginmanager: Any) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def config_sections() -> list[Any]:
    from .config import SECTION

    return [SECTION]


@hookimpl
def add_cli_options(parser: argparse.ArgumentParser, command: str) -> None:
    if command not in LOG_OPTION_COMMANDS:
        return
    group = parser.add_argument_group("monitor plugin")
    taken = parser._option_string_actions
    # default=None: a flag the operator did not type must not override the config file.
    if "--log-json" not in taken:
        group.add_argument(
            "--log-json",
            dest=_DEST_JSON,
            action="store_const",
            const=True,
            default=None,
            help="Log JSON lines instead of text (config: monitor.log_format).",
        )
    if "--log-dir" not in taken:
        group.add_argument(
            "--log-dir",
            dest=_DEST_DIR,
            default=None,
            metavar="DIR",
            help="Also write this process's log to a rotated file in DIR (config: monitor.log_dir).",
        )
    if command == "scheduler" and "--metrics-port" not in taken:
        group.add_argument(
            "--metrics-port",
            dest=_DEST_PORT,
            type=int,
            default=None,
            metavar="PORT",
            help="Serve this scheduler's /metrics on PORT (config: monitor.metrics_port; default: none).",
        )


@hookimpl
def configure(config: Any, args: argparse.Namespace | None) -> None:
    if args is None:
        return
    monitor = config.monitor
    if getattr(args, _DEST_JSON, None):
        monitor.log_format = "json"
    if getattr(args, _DEST_DIR, None) is not None:
        monitor.log_dir = getattr(args, _DEST_DIR)
    if getattr(args, _DEST_PORT, None) is not None:
        monitor.metrics_port = getattr(args, _DEST_PORT)


@hookimpl
def startup(config: Any, role: str) -> None:
    _process().startup(config, role)


@hookimpl
def shutdown() -> None:  # the same in every role; takes no argument, so any caller's spelling works
    _process().shutdown()


@hookimpl
@may_lag  # logs and counts: a few milliseconds late, in batches, is fine (``lama_cleaner/events.py``)
def task_event(event: Any) -> None:
    _process().observe(event)


@hookimpl
def register_routes(app: Any, socketio: Any, config: Any, executor: Any) -> None:
    _process().register_routes(app, socketio, config, executor, _extra_sinks)


@optional_hookimpl
def scheduler_started(scheduler: Any, config: Any) -> None:
    _process().scheduler_started(scheduler, config, _extra_sinks)


@optional_hookimpl
def scheduler_stopped(scheduler: Any, config: Any) -> None:
    _process().scheduler_stopped(scheduler)


@optional_hookimpl
def scaling_decision(decision: Any) -> None:
    """Declared by the autoscale plugin (optional here): count it as ``lama_cleaner_scale_decisions_total``."""
    _process().scaling_decision(decision)
