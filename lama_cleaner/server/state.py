"""What the web server owns, kept on the Flask app (no module-level globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    import pluggy

    from ..config import Config
    from ..events import EventSink
    from ..executor import InpaintExecutor
    from ..image_plugins.registry import ImagePluginRegistry
    from ..models.registry import ModelRegistry
    from .notifications import SocketNotifier

EXTENSION_KEY = "lama_cleaner"


@dataclass
class ServerState:
    """The configuration, executor and registries the routes read."""

    config: Config
    pm: pluggy.PluginManager
    executor: InpaintExecutor
    models: ModelRegistry
    """Names for ``/model`` and ``/model_downloaded``."""
    image_plugins: ImagePluginRegistry
    """Names for ``/run_plugin`` and ``/server_config``."""
    notifier: SocketNotifier
    events: EventSink
    """Where executors report task events; closed with the app (``close_app``)."""


def state() -> ServerState:
    """The :class:`ServerState` of the current app."""
    return current_app.extensions[EXTENSION_KEY]
