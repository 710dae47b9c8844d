"""Hooks the monitor plugin publishes (added to the plugin manager through ``add_hookspecs``).

Like every hook, an implementation takes only the arguments it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hookspecs import hookspec

if TYPE_CHECKING:
    from ...config import Config
    from .alerts.sinks import AlertSink


@hookspec
def alert_sinks(config: Config) -> list[AlertSink]:
    """Return alert sinks to add to the configured ones; each gets every delivery (see ``alerts.sinks``)."""
