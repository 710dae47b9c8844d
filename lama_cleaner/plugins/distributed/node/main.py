"""``lama-cleaner node``: parse the command line, build the config and run a :class:`Node`.

Example::

    lama-cleaner node --scheduler tcp://10.0.0.5:5570 --queues gpu --device cuda --labels zone=lab

Signals: the first SIGTERM/SIGINT stops taking work and lets the current task finish (up to
``--stop-grace`` seconds), a second one exits at once. Either way the node says BYE.

The process runs the ``node`` role (:func:`~lama_cleaner.plugins.lifecycle.running`) around its
whole life, and its inference child the ``inference`` role, with the same plugins (``distributed``
among them, registered like any other). Labels are ``--labels`` with every plugin's
``node_labels`` merged over them (:mod:`.labels`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

import zmq

from ....config import ConfigError, validate_config
from ....cpu_threads import describe as describe_threads
from ....errors import LamaCleanerError
from ....models.device import resolve_device
from ...config_loader import load_config
from ..config import DEVICE_PATTERN, check_endpoint
from ..malloc_tuning import tune_malloc
from .capabilities import effective_device, parse_labels, split_list
from .labels import advertised_labels

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lama-cleaner node",
        description="Run a worker node that pulls inpainting tasks from a lama-cleaner scheduler.",
    )
    ap.add_argument(
        "--scheduler",
        help="Scheduler control endpoint, e.g. tcp://127.0.0.1:5570 "
        "(default: distributed.scheduler, else distributed.scheduler_bind of the config).",
    )
    ap.add_argument("--queues", default=None, help="Comma-separated queues to join (default: all it qualifies for).")
    ap.add_argument("--models", default=None, help="Comma-separated models to offer (default: every available one).")
    ap.add_argument(
        "--device",
        default=None,
        type=_device,
        metavar="{cpu,cuda,cuda:N,mps}",
        help="Device for models. Given here, it must be usable: cuda without a usable GPU is an "
        "error, as for the server (default: the config's device, whose cuda default falls back to "
        "cpu without a GPU).",
    )
    ap.add_argument("--name", default=None, help="Human-readable node name (default: host-pid).")
    ap.add_argument("--labels", default=None, help="Comma-separated key=value labels reported to the scheduler.")
    ap.add_argument("--plugins", default=None, help="Comma-separated plugins (same syntax as the server's --plugins).")
    ap.add_argument("--config", default=None, help="TOML or JSON config file.")
    ap.add_argument("--parent-pid", type=int, default=None, help="Exit when this process dies.")
    ap.add_argument("--exit-on-drain", action="store_true", help="Exit once a DRAIN from the scheduler is done.")
    ap.add_argument(
        "--max-idle-s",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="Exit (saying goodbye) after S seconds with no task: a node started for a burst, or a "
        "serverless instance, leaves by itself when the work is gone (default: never).",
    )
    ap.add_argument(
        "--stop-grace",
        type=float,
        default=10.0,
        help="Seconds a SIGTERM waits for the current task before exiting (default: %(default)s).",
    )
    ap.add_argument(
        "--max-tasks-per-child",
        type=_non_negative,
        default=None,
        metavar="N",
        help="Replace the inference process after N tasks (0 = never; default: distributed.node_max_tasks_per_child).",
    )
    ap.add_argument(
        "--max-child-rss-mb",
        type=_non_negative,
        default=None,
        metavar="MB",
        help="Replace the inference process after a task that left it above MB MiB resident "
        "(0 = no cap; default: distributed.node_max_child_rss_mb).",
    )
    ap.add_argument(
        "--pipeline-depth",
        type=_non_negative,
        default=None,
        metavar="N",
        help="Tasks the node holds at once, image stages overlapping the model (0 = derived from the "
        "device; default: distributed.node_pipeline_depth).",
    )
    ap.add_argument(
        "--threads",
        type=_non_negative,
        default=None,
        metavar="N",
        help="Threads of the inference process's math libraries (0 = OMP_NUM_THREADS, else the "
        "libraries' defaults; default: distributed.node_threads).",
    )
    ap.add_argument("--log-level", default="INFO", help="Python logging level (default: %(default)s).")
    return ap


def _device(text: str) -> str:
    """argparse type: cpu, mps, cuda or cuda:N (a local node gets the server's device, which may name a GPU)."""
    if not DEVICE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def _positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0 (a negative limit has no meaning)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _pre_plugins(argv: Sequence[str]) -> list[str]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugins", default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(list(argv))
    plugins = split_list(known.plugins)
    if not plugins and known.config:
        try:
            plugins = list(load_config(known.config).plugins)
        except ConfigError:
            plugins = []
    return plugins


def node_main(argv: Sequence[str] | None = None) -> int:
    """Run a node until it is told to stop; returns the process exit code."""
    from ...lifecycle import running
    from ...manager import create_plugin_manager
    from ..roles import process_plugins
    from .agent import Node

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        plugins = _pre_plugins(argv)
        pm = create_plugin_manager(process_plugins(plugins))
    except ConfigError as exc:
        parser.error(str(exc))
    pm.hook.add_cli_options(parser=parser, command="node")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s node[%(process)d] %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
        labels = parse_labels(args.labels)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    if args.plugins is not None:
        config.plugins = split_list(args.plugins)
    if args.max_tasks_per_child is not None:
        config.distributed.node_max_tasks_per_child = args.max_tasks_per_child
    if args.pipeline_depth is not None:
        config.distributed.node_pipeline_depth = args.pipeline_depth
    if args.max_child_rss_mb is not None:
        config.distributed.node_max_child_rss_mb = args.max_child_rss_mb
    if args.threads is not None:
        config.distributed.node_threads = args.threads
    pm.hook.configure(config=config, args=args)
    scheduler = args.scheduler or config.distributed.scheduler or config.distributed.scheduler_bind
    try:
        validate_config(config)  # what the flags and the plugins' configure hooks changed, too
        check_endpoint("--scheduler", scheduler, connect=True)
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        _try_connect(scheduler)
    except zmq.ZMQError as exc:
        return _failed(f"cannot use scheduler address {scheduler}: {exc}")
    try:
        device = node_device(args.device, config.device)
    except ConfigError as exc:
        return _usage_failed(str(exc))
    config.device = device
    tuned = tune_malloc()  # this process, and (through the environment) the inference child it spawns
    if tuned:
        log.debug("malloc settings for the node and its inference process: %s", tuned)

    node_ref: list[Node] = []
    early_signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signum)
        if node_ref:
            node_ref[0].request_stop()
            return
        # Still starting. The stop is remembered and applied once the node exists (it then exits
        # before it spawns its inference process or says HELLO): an exception raised here would land
        # wherever start-up happens to be, and a broad ``except`` there (a model's availability
        # check, a plugin) would swallow it and the node would run on, deaf to the stop. A second
        # signal is the operator insisting: unwind now, as best it can.
        early_signals.append(signum)
        if len(early_signals) > 1:
            raise _StoppedEarly()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with running(pm, config, "node"):
            try:
                labels = advertised_labels(pm, config, labels)
                node = Node(
                    scheduler,
                    config,
                    name=args.name,
                    queues=split_list(args.queues),
                    models=split_list(args.models),
                    device=device,
                    labels=labels,
                    plugins=process_plugins(config.plugins),
                    exit_on_drain=args.exit_on_drain,
                    parent_pid=args.parent_pid,
                    stop_grace_s=args.stop_grace,
                    max_idle_s=args.max_idle_s,
                    plugin_manager=pm,
                )
            except (zmq.ZMQError, RuntimeError, OSError, LamaCleanerError) as exc:
                return _failed(f"cannot start: {exc}")
            node_ref.append(node)  # before the check below: a signal from now on reaches the node itself
            if early_signals:
                node.request_stop()
            log.info(
                "node %s offers models %s on %s (%d task(s) at once, %s)",
                node.name,
                node.models,
                device,
                node.depth,
                describe_threads(node.threads, os.environ),
            )
            try:
                return node.run()
            except zmq.ZMQError as exc:  # e.g. a scheduler address ZeroMQ cannot connect to (tcp://host:0)
                return _failed(f"scheduler {scheduler}: {exc}")
    except ConfigError as exc:  # e.g. --models naming nothing this node can run, a plugin's startup
        return _usage_failed(str(exc))
    except _StoppedEarly:
        return 0


class _StoppedEarly(Exception):
    """A second SIGTERM/SIGINT while the node is still starting: nothing to finish, so it stops at once."""


def _try_connect(endpoint: str) -> None:
    """Raise ZMQError now if ZeroMQ refuses ``endpoint`` (e.g. a host name with a space), before
    the inference process starts: connecting does not wait for a peer, so this costs nothing."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
        finally:
            sock.close(0)
    finally:
        ctx.term()


def node_device(flag: str | None, configured: str) -> str:
    """The device the node runs on. ``--device`` given on the command line is the operator's explicit
    choice and must work here (``resolve_device``: cuda without a usable GPU raises ConfigError, as
    ``serve`` refuses it), rather than quietly giving a CPU node where a GPU one was asked for. The
    config's device (``cuda`` by default) still falls back to cpu, so a bare ``lama-cleaner node``
    starts anywhere. Local nodes get the server's device, which the server already checked."""
    if flag is not None:
        return resolve_device(flag)
    return effective_device(configured)


def _failed(message: str) -> int:
    """One line on stderr and exit status 1: what the operator must fix, not a traceback."""
    print(f"lama-cleaner node: error: {message}", file=sys.stderr, flush=True)
    return 1


def _usage_failed(message: str) -> int:
    """One line on stderr and exit status 2 (argparse's status for bad usage, and ``serve``'s for a
    refused setting): a flag asks for something this host or node cannot do."""
    print(f"lama-cleaner node: error: {message}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":  # pragma: no cover - `python -m lama_cleaner.plugins.distributed.node.main`
    sys.exit(node_main())
