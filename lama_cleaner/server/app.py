"""The Flask application factory: one app, its Socket.IO server and the executor behind them.

Everything the routes need is built here from the plugin manager (executor, model and image-plugin
registries, the Socket.IO notifier) and stored on the app; plugins then add their own routes through
``register_routes``. Nothing listens yet: the CLI calls ``socketio.run`` on what this returns.
"""

from __future__ import annotations

import logging

import pluggy
from flask import Flask
from flask_cors import CORS
from flask_socketio import SocketIO

from ..config import Config
from ..events import EventSink
from ..executor import InpaintExecutor
from ..image_plugins.registry import build_image_plugin_registry
from ..models.registry import build_model_registry
from . import classic, media
from .auth import install_auth
from .errors import install_error_handlers
from .notifications import ENGINEIO_COOKIE_OPTIONS, SocketNotifier
from .state import EXTENSION_KEY, ServerState

log = logging.getLogger(__name__)
NOTIFIER_PLUGIN_NAME = "builtin:socketio-notifier"
MIB = 1024 * 1024


def create_app(config: Config, pm: pluggy.PluginManager) -> tuple[Flask, SocketIO, InpaintExecutor]:
    """Build the web server for ``config`` with the plugins registered in ``pm``."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_upload_mb * MIB  # bigger bodies: 413, not memory
    install_auth(app, config)  # first: an unreadable token file stops start-up before anything runs
    app.json.sort_keys = True  # type: ignore[attr-defined]  # upstream's Flask 2.2 sorted JSON keys
    CORS(app, expose_headers=["Content-Disposition"])
    socketio = SocketIO(
        app,
        async_mode="threading",
        cors_allowed_origins="*",
        cookie=ENGINEIO_COOKIE_OPTIONS,
        logger=False,
        engineio_logger=False,
    )

    events = EventSink(pm)
    notifier = SocketNotifier(socketio, events)
    notifier.register_handlers()
    if pm.has_plugin(NOTIFIER_PLUGIN_NAME):
        pm.unregister(name=NOTIFIER_PLUGIN_NAME)
    pm.register(notifier, name=NOTIFIER_PLUGIN_NAME)

    executor = pm.hook.inpaint_executor(config=config, events=events)
    if executor is None:
        events.close()
        raise RuntimeError("no plugin provided an inpaint executor (is lama_cleaner.local_executor registered?)")

    app.extensions[EXTENSION_KEY] = ServerState(
        config=config,
        pm=pm,
        executor=executor,
        models=build_model_registry(pm),
        image_plugins=build_image_plugin_registry(pm, config),
        notifier=notifier,
        events=events,
    )
    install_error_handlers(app)
    app.register_blueprint(classic.blueprint)
    app.register_blueprint(media.blueprint)
    pm.hook.register_routes(app=app, socketio=socketio, config=config, executor=executor)
    return app, socketio, executor


def close_app(app: Flask) -> None:
    """Stop what ``create_app`` started: the executor first (its last events still reach the
    observers), then the observers' dispatchers, which deliver what is queued within a deadline."""
    st: ServerState = app.extensions[EXTENSION_KEY]
    try:
        st.executor.close()
    finally:
        st.events.close()
