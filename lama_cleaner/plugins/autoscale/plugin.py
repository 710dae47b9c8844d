"""The ``autoscale`` plugin (``--plugins distributed,autoscale``): its face, hook implementations only.

- ``config_sections``: the ``[autoscale]`` section (``config.py``), known even when not enabled.
- ``add_hookspecs``: publishes ``register_scaling_providers``, ``scaling_decision`` and
  ``scaling_provider_event`` (``hookspecs.py``); ``register_scaling_providers`` also brings the
  built-in providers, through the same hook a third party uses.
- ``register_commands``: ``lama-cleaner scale QUEUE =N|+N|-N`` (``command.py``).
- ``configure``: checks the section against the registered providers and ``distributed.queues``.
- ``scheduler_started``/``scheduler_stopped`` (the distributed plugin's hooks, in the process that runs
  the scheduler): start and stop the autoscaler (``runtime.py``); ``shutdown`` drains first where the
  scheduler still runs.
- ``node_event``: feeds instance tracking; ``scheduler_call``: answers ``autoscale.status`` and
  ``autoscale.scale`` for the web process.
- ``register_routes``: ``GET /api/v1/autoscale`` and ``POST /api/v1/queues/<queue>/scale`` (``routes.py``).
- ``node_labels``: in a node, the labels a platform passes in the environment (``labels.py``).

The distributed plugin's hooks are optional here (``optionalhook``), so the plugin loads in a
process where the distributed plugin is not registered (a node, a catalog). Importing this module
imports none of the autoscaler: the core imports it to collect commands and config sections.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..hookspecs import hookimpl

log = logging.getLogger(__name__)

_runtimes: Any = None


def _registry() -> Any:
    global _runtimes
    if _runtimes is None:
        from .runtime import Runtimes

        _runtimes = Runtimes()
    return _runtimes


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
    from .command import COMMANDS

    return list(COMMANDS)


@hookimpl
def register_scaling_providers() -> list[Any]:
    from .providers.builtin import builtin_provider_classes

    return list(builtin_provider_classes().values())


@hookimpl
def configure(config: Any) -> None:
    """Refuse a queue policy naming an unknown provider or queue before anything starts."""
    from ..manager import current_plugin_manager
    from .config import validate_autoscale_config
    from .providers.registry import collect_provider_classes

    if "autoscale" not in config.sections:
        return
    classes = collect_provider_classes(current_plugin_manager(), config)
    queues = getattr(getattr(config, "distributed", None), "queues", None)
    validate_autoscale_config(config.autoscale, provider_names=set(classes), queues=queues)


@hookimpl(optionalhook=True)
def scheduler_started(scheduler: Any, config: Any) -> None:
    from ..manager import current_plugin_manager
    from .runtime import AutoscaleRuntime

    runtime = AutoscaleRuntime(scheduler, config, current_plugin_manager())
    _registry().add(runtime)
    runtime.start()


@hookimpl(optionalhook=True)
def scheduler_stopped(scheduler: Any) -> None:
    """The scheduler is gone: no drain can reach a node any more, so the providers are closed
    (local nodes get SIGTERM: they finish their task if they can and exit). That waits for the
    processes, so it runs on a thread of its own rather than the scheduler's ending loop thread;
    ``shutdown`` waits for it."""
    import threading

    registry = _registry()
    runtime = registry.for_handle(scheduler)
    for item in [runtime] if runtime is not None else registry.all():
        registry.remove(item)
        thread = threading.Thread(target=item.stop, kwargs={"drain": False}, name="autoscale-stop", daemon=True)
        thread.start()
        _stopping.append(thread)


_stopping: list[Any] = []
"""Threads closing the providers of a stopped scheduler (joined by ``shutdown``)."""


@hookimpl
def shutdown() -> None:
    """The process is ending. An autoscaler whose scheduler still runs drains the nodes it started
    first (the scheduler can still tell them), then stops them; the providers of a scheduler that
    already stopped (``serve`` and ``lama-cleaner scheduler`` stop theirs before this hook) are being
    closed by ``scheduler_stopped``'s thread, which this waits for."""
    registry = _registry()
    for runtime in registry.all():
        try:
            runtime.stop(drain=True)
        except Exception:  # noqa: BLE001 - shutting down: release the rest
            log.exception("stopping the autoscaler failed")
        registry.remove(runtime)
    while _stopping:
        thread = _stopping.pop()
        thread.join(STOP_WAIT_S)
        if thread.is_alive():
            log.warning("autoscale: the providers of a stopped scheduler are still closing after %g s", STOP_WAIT_S)


STOP_WAIT_S = 60.0
"""How long ``shutdown`` waits for the providers of a stopped scheduler to close (local nodes to exit)."""


@hookimpl(optionalhook=True)
def node_event(event: Any) -> None:
    _registry().each(lambda runtime: runtime.node_event(event))


@hookimpl(optionalhook=True)
def scheduler_call(name: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    from .runtime import CALLS, call_error

    if name not in CALLS:
        return None
    runtime = _registry().first()
    if runtime is None:
        return call_error(503, "autoscale_not_running", "the autoscaler is not running (the scheduler is stopped)")
    return runtime.call(name, payload)


@hookimpl(optionalhook=True)
def node_labels() -> dict[str, str]:
    from .labels import labels_from_environment

    return labels_from_environment(os.environ)


@hookimpl
def register_routes(app: Any, executor: Any) -> None:
    from .routes import register_autoscale_routes

    register_autoscale_routes(app, executor)
