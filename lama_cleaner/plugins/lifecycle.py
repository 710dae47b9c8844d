"""``startup``/``shutdown`` around a process role, the same way in every process.

Each role (``serve``, ``batch``, and the roles of plugins' processes: ``scheduler``, ``node``,
``inference``) wraps its work in :func:`running`, so a plugin can set up logging, metrics or tracing
in every process and release them at exit. ``shutdown`` is called even when ``startup`` or the work
failed, and one plugin's failing ``shutdown`` never keeps the others from releasing what they hold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pluggy

from .hookspecs import ROLES

log = logging.getLogger(__name__)


def start(pm: pluggy.PluginManager, config: Any, role: str) -> None:
    """Call every ``startup`` implementation; an exception stops the role from starting."""
    if role not in ROLES:
        raise ValueError(f"unknown process role {role!r}; expected one of {', '.join(ROLES)}")
    pm.hook.startup(config=config, role=role)


def stop(pm: pluggy.PluginManager, config: Any, role: str) -> None:
    """Call every ``shutdown`` implementation, each on its own: a failure is logged with the plugin's
    name and the others still run. Implementations take only the arguments they name, so the older
    ``shutdown(config)`` keeps working."""
    kwargs = {"config": config, "role": role}
    for impl in reversed(pm.hook.shutdown.get_hookimpls()):  # pluggy's own call order
        try:
            impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception:  # noqa: BLE001 - shutting down: log and keep releasing the rest
            log.exception("shutdown hook of plugin %s failed (role %s)", impl.plugin_name, role)


@contextmanager
def running(pm: pluggy.PluginManager, config: Any, role: str) -> Iterator[None]:
    """``startup`` now, ``shutdown`` when the block ends, however it ends (an error, SIGTERM turned
    into an exception, Ctrl+C). ``shutdown`` also runs when a ``startup`` failed half-way, so every
    plugin must tolerate a ``shutdown`` without a ``startup`` of its own."""
    try:
        start(pm, config, role)
        yield
    finally:
        stop(pm, config, role)
