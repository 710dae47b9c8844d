"""Socket.IO side of the server: who submitted a request, and the events sent back to them.

Upstream broadcast every progress/finish event to every tab, mixing users. Here a classic request
that can be tied to the Socket.IO client that sent it (header ``X-Socket-ID``, or the engine.io
``io`` cookie the browser sends with ``fetch``) gets its events privately: only that client, and
clients that subscribed to the task's room, see them. A request that carries neither comes from a
client that cannot be told apart (a script that connected with python-socketio and POSTs
``/inpaint`` separately, as worked with 1.2.5), so its ``diffusion_progress`` and
``diffusion_finish`` are broadcast to everyone, as upstream does (docs/compatibility.md#socketio).
A request that names a socket which is not connected gets no events: never guess.

The notifier is a ``task_event`` observer like any other, so it runs on its own dispatcher thread
(``events.py``); ``diffusion_finish``, sent when ``/inpaint`` returns, is queued behind the task's
events on that same thread so that it always comes after the last ``diffusion_progress``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import request
from flask_socketio import SocketIO, join_room, leave_room

from ..plugins.hookspecs import hookimpl
from ..tasks import TaskEvent

if TYPE_CHECKING:
    from ..events import EventSink

log = logging.getLogger(__name__)

NAMESPACE = "/"
SOCKET_ID_HEADER = "X-Socket-ID"
ENGINEIO_COOKIE = "io"
ENGINEIO_COOKIE_OPTIONS = {"name": ENGINEIO_COOKIE, "path": "/", "SameSite": "Lax"}
"""Passed as ``cookie=`` to engine.io so browsers get the ``io`` cookie on the handshake."""
EVERYONE = "*"
"""``TaskRequest.submitter`` of a classic request that names no socket: its progress and finish
events are broadcast (a Socket.IO sid never has this value)."""


def task_room(task_id: str) -> str:
    """Room that ``subscribe {"id": task_id}`` joins."""
    return f"task:{task_id}"


class SocketNotifier:
    """Built-in ``task_event`` observer that turns task events into Socket.IO messages."""

    def __init__(self, socketio: SocketIO, events: EventSink | None = None) -> None:
        self.socketio = socketio
        self.events = events

    # ------------------------------------------------------------ submitter lookup
    def _connected(self, sid: str) -> bool:
        try:
            return bool(self.socketio.server.manager.is_connected(sid, NAMESPACE))
        except (KeyError, AttributeError):
            return False

    def submitter_sid(self) -> str | None:
        """The Socket.IO sid of the client behind the current HTTP request, if it is connected."""
        sid = (request.headers.get(SOCKET_ID_HEADER) or "").strip()
        if sid and self._connected(sid):
            return sid
        eio_sid = request.cookies.get(ENGINEIO_COOKIE)
        if eio_sid:
            mapped = self.socketio.server.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
            if mapped and self._connected(mapped):
                return mapped
        return None

    def classic_submitter(self) -> str | None:
        """Who gets the Socket.IO events of a classic ``/inpaint`` or ``/run_plugin``: the client's
        sid, :data:`EVERYONE` when the request names no socket at all (upstream's broadcast), or
        None when it names one that is not connected."""
        if SOCKET_ID_HEADER not in request.headers and ENGINEIO_COOKIE not in request.cookies:
            return EVERYONE
        return self.submitter_sid()

    # ------------------------------------------------------------ outgoing events
    def _audience(self, submitter: str | None) -> dict[str, Any] | None:
        """``emit`` keyword arguments for a submitter's private events; None when nobody gets them."""
        if submitter == EVERYONE:
            return {"namespace": NAMESPACE}  # no ``to``: every connected client
        if submitter:
            return {"to": submitter, "namespace": NAMESPACE}
        return None

    def finish(self, submitter: str | None) -> None:
        """``diffusion_finish`` after a successful ``/inpaint``, behind the task's queued events."""
        audience = self._audience(submitter)
        if audience is None:
            return

        def send() -> None:
            self.socketio.emit("diffusion_finish", **audience)

        if self.events is not None:
            self.events.after_events(self, send)
        else:
            send()

    @hookimpl
    def task_event(self, event: TaskEvent) -> None:
        targets: list[str] = [task_room(event.task_id)]
        if event.submitter and event.submitter != EVERYONE:
            targets.insert(0, event.submitter)
        self.socketio.emit("task_status", event.public(), to=targets, namespace=NAMESPACE)
        audience = self._audience(event.submitter)
        if event.step is not None and audience is not None:
            self.socketio.emit("diffusion_progress", {"step": event.step}, **audience)

    # ------------------------------------------------------------ incoming events
    def register_handlers(self) -> None:
        """``subscribe``/``unsubscribe`` ``{"id": task_id}`` join or leave the task's room."""

        def _change_room(data: Any, change: Callable[[str], None]) -> dict[str, Any]:
            """Join or leave the room of the task ``data`` names (``{"id": ...}`` or the bare id)."""
            task_id = data.get("id") if isinstance(data, dict) else data
            if not isinstance(task_id, str) or not task_id:
                return {"ok": False, "error": 'expected {"id": "<task id>"}'}
            change(task_room(task_id))
            return {"ok": True, "room": task_room(task_id)}

        @self.socketio.on("subscribe", namespace=NAMESPACE)
        def _subscribe(data: Any = None) -> dict[str, Any]:
            return _change_room(data, join_room)

        @self.socketio.on("unsubscribe", namespace=NAMESPACE)
        def _unsubscribe(data: Any = None) -> dict[str, Any]:
            return _change_room(data, leave_room)

        @self.socketio.on("whoami", namespace=NAMESPACE)
        def _whoami(_data: Any = None) -> dict[str, Any]:
            """The client's own sid, for clients that want to send ``X-Socket-ID``."""
            return {"sid": request.sid}  # type: ignore[attr-defined]
