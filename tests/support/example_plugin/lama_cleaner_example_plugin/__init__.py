"""Example lama-cleaner plugin (see README.md). Every hook takes only the arguments it needs."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np
from flask import Blueprint, jsonify

from lama_cleaner.cli import Command
from lama_cleaner.config import ConfigSection, setting
from lama_cleaner.models.base import InpaintModel
from lama_cleaner.plugins.hookspecs import hookimpl

GREETING_KEY = "example_greeting"
NODE_LABELS = {"example-plugin": "invert"}
"""What a node with this package installed advertises (hook ``node_labels``), beside the model."""
_events: Counter[str] = Counter()
_events_lock = threading.Lock()


class InvertModel(InpaintModel):
    """Replaces masked pixels by their colour negative: trivially checkable from outside."""

    name = "example-invert"
    resource_class = "cpu"
    memory_mb = 1
    pad_mod = 1

    def forward(self, image_rgb: np.ndarray, mask: np.ndarray, req) -> np.ndarray:
        return np.ascontiguousarray(255 - image_rgb[:, :, ::-1])


@dataclass
class ExampleSettings:
    """The ``[example]`` table of the config file."""

    greeting: str = setting("world", "Who GET /hello-plugin greets.", flag="--example-greeting")


@hookimpl
def config_sections():
    return [ConfigSection("example", ExampleSettings, doc="Settings of the example plugin.")]


def hello_main(argv):
    """``lama-cleaner example-hello [NAME]``: a command of its own, found through the entry point."""
    print(f"hello from example plugin, {argv[0] if argv else 'world'}")
    return 0


@hookimpl
def register_commands():
    return [Command("example-hello", "print a greeting (example plugin)", hello_main)]


@hookimpl
def add_cli_options(parser, command):
    if command == "serve":
        # default=None: only a flag the operator typed overrides the config file
        parser.add_argument("--example-greeting", default=None, help="Who GET /hello-plugin greets.")


@hookimpl
def configure(config, args):
    greeting = getattr(args, "example_greeting", None) if args is not None else None
    if greeting:
        config.example.greeting = greeting


@hookimpl
def register_models(registry):
    registry.register(InvertModel)


# optionalhook: ``node_labels`` is published by the distributed plugin, which a classic server does not load.
@hookimpl(optionalhook=True)
def node_labels():
    return dict(NODE_LABELS)


@hookimpl
def register_routes(app, config):
    blueprint = Blueprint("example_plugin", __name__)
    greeting = config.example.greeting

    @blueprint.get("/hello-plugin")
    def hello():
        return f"hello from example plugin, {greeting}"

    @blueprint.get("/hello-plugin/events")
    def events():
        with _events_lock:
            return jsonify(dict(_events))

    app.register_blueprint(blueprint)


@hookimpl
def task_event(event):
    with _events_lock:
        _events[event.status] += 1
