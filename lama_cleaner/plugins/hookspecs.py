"""Every hook a lama-cleaner plugin can implement.

A plugin is any object or module with functions decorated by ``hookimpl`` whose names match the
specs below. It takes only the arguments it needs (pluggy passes them by name). Each hook is
documented in ``docs/plugins.md`` with its arguments, return value, when it is called and an
example. The built-in behaviour (local inference, Socket.IO notifications, image plugins, models)
is registered through these same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from flask import Flask
    from flask_socketio import SocketIO

    from ..config import Config
    from ..executor import InpaintExecutor
    from ..image_plugins.registry import ImagePluginRegistry
    from ..models.registry import ModelRegistry
    from ..tasks import TaskEvent

PROJECT = "lama_cleaner"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def add_cli_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add options to the argparse parser of ``command`` (``serve``, ``node``, ``scheduler``, ``batch``)."""


@hookspec
def configure(config: Config, args: argparse.Namespace | None) -> None:
    """Read or adjust the resolved configuration (and your own CLI options) before anything starts."""


@hookspec
def register_models(registry: ModelRegistry) -> None:
    """Register model classes (``registry.register(ModelClass)``) so they can be named by ``--model``."""


@hookspec
def register_image_plugins(registry: ImagePluginRegistry, config: Config) -> None:
    """Register image plugins served by ``/run_plugin`` (``registry.register(plugin)``)."""


@hookspec(firstresult=True)
def inpaint_executor(config: Config, events: Any) -> InpaintExecutor | None:
    """Return the executor that runs inpaint and image-plugin work; the first non-None result wins.

    ``events`` is the ``EventSink`` the executor must report task lifecycle events to.
    """


@hookspec
def register_routes(app: Flask, socketio: SocketIO, config: Config, executor: InpaintExecutor) -> None:
    """Add Flask blueprints/routes and Socket.IO handlers to the web server."""


@hookspec
def task_event(event: TaskEvent) -> None:
    """Observe a task lifecycle change (queued, processing, progress, completed, failed, cancelled)."""


@hookspec
def server_started(config: Config, app: Flask) -> None:
    """Called once the web server is about to accept connections."""


@hookspec
def shutdown(config: Config) -> None:
    """Release what your plugin started (threads, processes, sockets); called once at exit."""
