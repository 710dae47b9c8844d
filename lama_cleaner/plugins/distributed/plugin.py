"""The ``distributed`` plugin (``--plugins distributed``): its face, hook implementations only.

- ``config_sections``: the ``[distributed]`` section (``config.py``), known even when not enabled.
- ``register_commands``: ``lama-cleaner node`` and ``lama-cleaner scheduler`` (``commands.py``).
- ``add_hookspecs``: publishes this plugin's own hooks (``hookspecs.py``).
- ``add_cli_options``/``configure``: ``serve`` gets ``--local-nodes``, ``--scheduler``,
  ``--scheduler-bind`` and ``--data-dir`` (the ``[distributed]`` section is not generated as flags).
- ``inpaint_executor``: replaces the local executor with :class:`DistributedExecutor`.
- ``register_routes``: serves ``/api/v1`` from that executor (it is also the TaskService).
- ``shutdown``: stops local nodes, the client and the embedded scheduler.

Importing this module imports none of the distributed system: the core imports it to collect
commands and config sections on every start, enabled or not.
"""

from __future__ import annotations

import argparse
import functools
import logging
from typing import Any

from ..hookspecs import hookimpl

log = logging.getLogger(__name__)

_NODES_ANSWER_S = 2.0
"""How long ``server_started`` waits for each node list while it waits for the local nodes."""

_SERVE_OPTIONS = (
    # setting (its `flag` metadata names the flag), type, metavar, help; each flag's default is its
    # setting's, named in the help
    (
        "local_nodes",
        int,
        "N",
        "Node subprocesses the server starts and keeps alive "
        "(config: distributed.local_nodes; default: {local_nodes}).",
    ),
    (
        "scheduler",
        str,
        "ADDR",
        "Use an external scheduler at this tcp:// address instead of "
        "embedding one (config: distributed.scheduler; default: embed one).",
    ),
    (
        "scheduler_bind",
        str,
        "ADDR",
        "Where the embedded scheduler listens (config: distributed.scheduler_bind; default: {scheduler_bind}).",
    ),
    (
        "scheduler_advertise",
        str,
        "ADDR",
        "The address nodes behind a NAT, port mapping or proxy reach the embedded scheduler at; a node "
        "connecting there is granted the queues at the ports after it (config: distributed.scheduler_advertise; "
        "default: unset, every node is granted the bound addresses).",
    ),
    (
        "data_dir",
        str,
        "DIR",
        "Directory of the scheduler's SQLite journal (config: distributed.data_dir; default: {data_dir}).",
    ),
)


def _dest(name: str) -> str:
    return f"dist_{name}"


_executors: list[Any] = []


@hookimpl
def add_hookspecs(pluginmanager: Any) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def config_sections() -> list[Any]:
    from .config import SECTION

    return [SECTION]


@hookimpl
def register_commands() -> list[Any]:
    from .commands import COMMANDS

    return list(COMMANDS)


@hookimpl
def add_cli_options(parser: argparse.ArgumentParser, command: str) -> None:
    if command != "serve":
        return
    from dataclasses import fields

    from .config import DistributedConfig

    defaults = vars(DistributedConfig())
    flags = {f.name: f.metadata["flag"] for f in fields(DistributedConfig) if "flag" in f.metadata}
    group = parser.add_argument_group("distributed plugin")
    for name, kind, metavar, help_text in _SERVE_OPTIONS:
        if flags[name] in parser._option_string_actions:  # the CLI may already generate it
            continue
        # default=None: a flag the operator did not type must not override the config file.
        group.add_argument(
            flags[name], dest=_dest(name), type=kind, default=None, metavar=metavar, help=help_text.format(**defaults)
        )


@hookimpl
def configure(config: Any, args: argparse.Namespace | None) -> None:
    if args is None or not hasattr(args, _dest("local_nodes")):
        return  # not `serve` (the scheduler's process registers this plugin too): no flags of ours
    for name, *_ in _SERVE_OPTIONS:
        value = getattr(args, _dest(name), None)
        if value is not None:
            setattr(config.distributed, name, value)
    from ...config import ConfigError

    dist = config.distributed
    if dist.local_nodes < 0:
        raise ConfigError("--local-nodes must be 0 or more")
    if dist.local_nodes > 0 and dist.local_node_device:
        _check_local_node_device(dist.local_node_device)


def _check_local_node_device(device: str) -> None:
    """Refuse a ``distributed.local_node_device`` this host cannot use, now, in one line.

    Local nodes get it as an explicit ``--device``, which a node refuses at start-up when the device
    is unusable; without this check the server would start and respawn failing nodes for ever. (The
    server's own ``--device``, which local nodes follow by default, is checked by the CLI.)
    """
    from ...config import ConfigError
    from ...models.device import resolve_device

    try:
        resolve_device(device)
    except ConfigError as exc:
        raise ConfigError(f"distributed.local_node_device = {device!r} cannot be used on this host: {exc}") from None


@hookimpl
def inpaint_executor(config: Any, events: Any) -> Any:
    import zmq

    from ...errors import LamaCleanerError
    from .producer.executor import DistributedExecutor

    # The server's EventSink carries the plugin manager the registries must come from; a bare
    # events object (tests, embedding) has none and the executor builds one from config.plugins.
    try:
        executor = DistributedExecutor(config, events, getattr(events, "plugin_manager", None))
    except (zmq.ZMQError, RuntimeError) as exc:
        # A port in use, a data directory locked by another scheduler, a journal that cannot be
        # opened or migrated (StoreError): the operator's to fix, so `serve` prints one line.
        raise LamaCleanerError(f"the distributed plugin cannot start: {exc}{_hint(config, exc)}") from exc
    _executors.append(executor)
    return executor


def _hint(config: Any, exc: BaseException) -> str:
    """Which setting to change when a socket could not be bound."""
    import zmq

    dist = config.distributed
    if isinstance(exc, zmq.ZMQError) and exc.errno == zmq.EADDRINUSE and not dist.scheduler:
        return (f" (the scheduler binds {dist.scheduler_bind} and the next {len(dist.queues)} ports for its queues; "
                "choose others with --scheduler-bind)")  # fmt: skip
    return ""


@hookimpl
def register_routes(app: Any, config: Any, executor: Any) -> None:
    from .producer.executor import DistributedExecutor

    if not isinstance(executor, DistributedExecutor):
        return  # another plugin won the executor hook; it owns its routes
    try:
        from ...server.api_v1 import register_api
    except ImportError as exc:
        log.warning("/api/v1 is not available: %s", exc)
        return
    register_api(app, executor, config)


@hookimpl
def server_started(config: Any, app: Any) -> None:
    """Before the first connection: wait for this server's local nodes (``local_nodes.wait_until_ready``)."""
    from ...server.state import EXTENSION_KEY
    from .producer.executor import DistributedExecutor
    from .producer.local_nodes import wait_until_ready

    executor = app.extensions[EXTENSION_KEY].executor
    if isinstance(executor, DistributedExecutor) and executor.local_nodes is not None:
        # A short answer time: an external scheduler that is down should not hold the server for 15 s.
        list_nodes = functools.partial(executor.nodes, timeout=_NODES_ANSWER_S)
        wait_until_ready(executor.local_nodes, list_nodes, config.distributed.local_nodes_ready_timeout_s)


@hookimpl
def shutdown(config: Any) -> None:
    while _executors:
        executor = _executors.pop()
        try:
            executor.close()
        except Exception:  # noqa: BLE001 - shutting down: log and keep releasing the rest
            log.exception("closing the distributed executor failed")
