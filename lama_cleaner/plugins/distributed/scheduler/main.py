"""``lama-cleaner scheduler``: run the scheduler as its own process.

Example::

    lama-cleaner scheduler --scheduler-bind tcp://0.0.0.0:5570 --data-dir /var/lib/lama-cleaner --config lc.toml

(Off loopback, ``lc.toml`` must name the scheduler's CURVE key, ``distributed.curve_secret_key``, and
usually ``curve_authorized_keys``: see docs/security.md; without a key it refuses to start.)

(``--bind`` is the older spelling of ``--scheduler-bind``; both work.) Web servers then use it
with ``distributed.scheduler = "tcp://host:5570"`` and nodes with
``lama-cleaner node --scheduler tcp://host:5570``. SIGTERM or SIGINT stops it cleanly (the journal is
closed; queued and running tasks are recovered by the next start on the same data directory).

Exit status: 0 after a requested stop; 1 when it could not start (one logged line: port in use,
data directory locked by another scheduler, journal or migrations unusable) or when its loop died
of an exception, so that a supervisor such as systemd's ``Restart=on-failure`` starts it again;
2 when a setting is refused (a flag, the config file, or a plugin's ``startup``).

The process runs the ``scheduler`` role (:func:`~lama_cleaner.plugins.lifecycle.running`): every
plugin's ``startup`` before the scheduler binds its sockets, ``shutdown`` after it stopped, on every
way out. The ``distributed`` plugin is registered here like any other plugin (it owns this command),
so the hooks it publishes can be implemented by the plugins loaded beside it.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ....config import Config, ConfigError, validate_config
from ...config_loader import load_config
from ..malloc_tuning import tune_malloc
from ..node.capabilities import split_list, task_resource_class
from .routing import ResourceClassOf

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lama-cleaner scheduler",
        description="Run the distributed scheduler: durable task journal, queues and node registry.",
    )
    ap.add_argument("--scheduler-bind", "--bind", dest="bind", metavar="ADDR", default=None,
                    help="Control endpoint to bind (distributed.scheduler_bind, default tcp://127.0.0.1:5570); "
                    "queue sockets bind the following ports.")  # fmt: skip
    ap.add_argument("--scheduler-advertise", "--advertise", dest="advertise", metavar="ADDR", default=None,
                    help="The address nodes behind a NAT, port mapping or proxy reach this scheduler at "
                    "(distributed.scheduler_advertise); a node connecting there is granted the queues at the "
                    "ports after it.")  # fmt: skip
    ap.add_argument("--data-dir", default=None, help="Directory of the SQLite journal (distributed.data_dir).")
    ap.add_argument("--config", default=None, help="TOML or JSON config file.")
    ap.add_argument("--plugins", default=None,
                    help="Comma-separated plugins whose models/image plugins must be routable.")  # fmt: skip
    ap.add_argument("--device", default=None, choices=["cuda", "cpu", "mps"],
                    help="The deployment's device (config `device`): with `cpu`, CPU-capable models such as "
                    "lama are routed to the cpu queue instead of gpu.")  # fmt: skip
    ap.add_argument("--log-level", default="INFO", help="Python logging level.")
    return ap


def _pre_parse(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugins", default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(list(argv))
    return known.config, split_list(known.plugins)


def build_resource_class_of(pm: Any, config: Config) -> ResourceClassOf:
    """``(kind, name) -> "gpu"|"cpu"|None`` from the model and image-plugin registries of ``pm``.

    Models go through ``routing_resource_class`` so that with ``--device cpu`` (a CPU deployment) a
    CPU-capable gpu-class model such as lama is routed to the cpu queue, as the web server does.
    """
    from ....image_plugins.registry import build_image_plugin_registry
    from ....models.registry import build_model_registry

    models = build_model_registry(pm)
    image_plugins = build_image_plugin_registry(pm, config)
    return functools.partial(
        task_resource_class, models=models, image_plugins=image_plugins, server_device=config.device
    )


def scheduler_main(argv: Sequence[str] | None = None) -> int:
    """Run the scheduler until SIGTERM/SIGINT; returns the process exit code."""
    from ...lifecycle import running
    from ...manager import create_plugin_manager
    from ..roles import process_plugins
    from .service import Scheduler

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        config_path, plugins = _pre_parse(argv)
        config = load_config(config_path)
        # The distributed plugin itself too: it publishes the hooks this process fires (node_event, ...).
        pm = create_plugin_manager(process_plugins(config.plugins, plugins))
    except ConfigError as exc:
        parser.error(str(exc))
    pm.hook.add_cli_options(parser=parser, command="scheduler")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s scheduler[%(process)d] %(name)s: %(message)s",
    )
    if args.bind:
        config.distributed.scheduler_bind = args.bind
    if args.advertise:
        config.distributed.scheduler_advertise = args.advertise
    if args.data_dir:
        config.distributed.data_dir = args.data_dir
    if args.device:
        config.device = args.device
    pm.hook.configure(config=config, args=args)
    try:
        validate_config(config)  # --bind and --data-dir, and whatever the plugins' hooks changed
    except ConfigError as exc:
        parser.error(str(exc))
    tune_malloc()  # every 1 MB message would otherwise fault its pages in again (see malloc_tuning)

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with running(pm, config, "scheduler"):
            return run_scheduler(Scheduler(config, build_resource_class_of(pm, config), plugin_manager=pm), stop)
    except ConfigError as exc:  # a plugin's startup refusing its settings
        print(f"lama-cleaner scheduler: error: {exc}", file=sys.stderr, flush=True)
        return 2


def run_scheduler(scheduler: Any, stop: threading.Event) -> int:
    """Start ``scheduler``, wait for ``stop`` (or for its loop to die), stop it; the exit status."""
    try:
        scheduler.start()
    except Exception as exc:  # bind or journal errors: say what and where, no traceback wall
        log.error("scheduler could not start: %s", exc)
        return 1
    print(f"scheduler ready: control {scheduler.control_endpoint} queues {scheduler.endpoints['queues']}", flush=True)
    try:
        while not stop.wait(0.2) and scheduler.running:
            pass
    finally:
        died = not stop.is_set()  # the loop ended without a signal asking it to
        scheduler.stop()
        stopped = scheduler.join(10.0)
    return exit_status(scheduler, died=died, stopped=stopped)


def exit_status(scheduler: Any, *, died: bool, stopped: bool) -> int:
    """0 only for a requested, completed stop. ``scheduler.crashed`` (the exception that ended the
    loop, when the Scheduler records it) or a loop that ended unasked means a crash: 1, logged."""
    crashed = getattr(scheduler, "crashed", None)
    if crashed is not None or died:
        log.error("scheduler loop died (%s); exiting with status 1", crashed or "see the error above")
        return 1
    if not stopped:
        log.error("scheduler loop did not stop within 10 s; exiting with status 1")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m lama_cleaner.plugins.distributed.scheduler.main`
    raise SystemExit(scheduler_main())
