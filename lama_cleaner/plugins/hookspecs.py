"""Every hook of the core that a lama-cleaner plugin can implement.

A plugin is any object or module with functions decorated by ``hookimpl`` whose names match the
specs below. It takes only the arguments it needs (pluggy passes them by name). Each hook is
documented in ``docs/plugins.md`` with its arguments, return value, when it is called and an
example (a test fails when one is missing). The built-in behaviour (local inference, Socket.IO
notifications, image plugins, models, the core commands) is registered through these same hooks.

A plugin publishes hooks of its own from ``add_hookspecs`` (the distributed plugin's are in
``lama_cleaner/plugins/distributed/hookspecs.py``); the core never learns their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from flask import Flask
    from flask_socketio import SocketIO

    from ..command import Command
    from ..config import Config, ConfigSection
    from ..executor import InpaintExecutor
    from ..image_plugins.registry import ImagePluginRegistry
    from ..models.registry import ModelRegistry
    from ..tasks import TaskEvent

PROJECT = "lama_cleaner"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ROLES = ("serve", "scheduler", "node", "inference", "batch")
"""The process roles ``startup`` and ``shutdown`` are called with."""


@hookspec(historic=True)
def add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Publish your plugin's own hooks (``pluginmanager.add_hookspecs(module)``) as it is registered."""


@hookspec
def config_sections() -> list[ConfigSection]:
    """Return the ``ConfigSection`` objects (config-file tables) your plugin owns."""


@hookspec
def register_commands() -> list[Command]:
    """Return ``lama_cleaner.cli.Command`` objects: subcommands of ``lama-cleaner`` your plugin provides."""


@hookspec
def add_cli_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add options to the argparse parser of ``command`` (``serve``, ``batch`` or a plugin's, e.g. ``node``)."""


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
    """Observe a task lifecycle change (queued, processing, completed, failed, cancelled) on a thread of your own."""


@hookspec
def server_started(config: Config, app: Flask) -> None:
    """Called once the web server is about to accept connections."""


@hookspec
def startup(config: Config, role: str) -> None:
    """Set up what your plugin needs in this process (logging, metrics, tracing); ``role`` is one of ``ROLES``."""


@hookspec
def shutdown(config: Config, role: str) -> None:
    """Release what your plugin started (threads, processes, sockets); called once at exit of every role."""
