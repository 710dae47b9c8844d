"""Push the metrics document to open ``/monitor`` pages over Socket.IO.

A page emits ``monitor_subscribe`` once connected, with ``{"token": ...}`` when the server has API tokens
(the feed carries what ``/api/v1/metrics`` does, so it needs the same ``metrics`` scope). It joins the
``monitor`` room and gets the current document at once, then one every ``interval_s`` while anyone is in
the room. Only subscribed pages get these events (the inpainting front end's clients never do), and no
document is computed while nobody watches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import current_app
from flask_socketio import SocketIO, emit, join_room

from ....errors import LamaCleanerError
from ....server.auth import METRICS, app_tokens, authorize

log = logging.getLogger(__name__)

SUBSCRIBE_EVENT = "monitor_subscribe"
SNAPSHOT_EVENT = "monitor_snapshot"
ROOM = "monitor"
NAMESPACE = "/"


class LiveFeed:
    """``register()`` the subscribe handler, ``start()`` the pushing thread, ``stop()`` it."""

    def __init__(self, socketio: SocketIO, document: Callable[[], dict[str, Any]], interval_s: float = 2.0) -> None:
        self.socketio = socketio
        self.document = document
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> LiveFeed:
        self.socketio.on_event(SUBSCRIBE_EVENT, self._subscribe, namespace=NAMESPACE)
        return self

    def _subscribe(self, data: Any = None) -> dict[str, Any]:
        """Join the room if the page may read the metrics; the acknowledgement says why not."""
        token = data.get("token") if isinstance(data, dict) else None
        try:
            authorize(app_tokens(current_app), token if isinstance(token, str) and token else None, METRICS)
        except LamaCleanerError as exc:
            return {"ok": False, "error": str(exc)}
        join_room(ROOM)
        emit(SNAPSHOT_EVENT, self.document())
        return {"ok": True}

    def _watched(self) -> bool:
        try:
            return any(True for _ in self.socketio.server.manager.get_participants(NAMESPACE, ROOM))
        except (KeyError, AttributeError):  # no such room yet (or a manager without the call): nobody
            return False

    def start(self) -> LiveFeed:
        self._thread = threading.Thread(target=self._run, name="lama-cleaner-monitor-feed", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            if not self._watched():
                continue
            try:
                self.socketio.emit(SNAPSHOT_EVENT, self.document(), to=ROOM, namespace=NAMESPACE)
            except Exception:  # noqa: BLE001 - the next beat tries again; the page shows its last document
                log.exception("monitor: pushing the dashboard document failed")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
