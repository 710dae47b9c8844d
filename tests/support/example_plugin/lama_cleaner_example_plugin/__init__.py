"""Example lama-cleaner plugin (see README.md). Every hook takes only the arguments it needs."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
from flask import Blueprint, jsonify

from lama_cleaner.models.base import InpaintModel
from lama_cleaner.plugins.hookspecs import hookimpl

GREETING_KEY = "example_greeting"
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


@hookimpl
def add_cli_options(parser, command):
    if command == "serve":
        parser.add_argument("--example-greeting", default="world", help="Who GET /hello-plugin greets.")


@hookimpl
def configure(config, args):
    greeting = getattr(args, "example_greeting", None) if args is not None else None
    config.extra.setdefault("example", {})
    if greeting:
        config.extra["example"]["greeting"] = greeting


@hookimpl
def register_models(registry):
    registry.register(InvertModel)


@hookimpl
def register_routes(app, config):
    blueprint = Blueprint("example_plugin", __name__)
    greeting = config.extra.get("example", {}).get("greeting", "world")

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
