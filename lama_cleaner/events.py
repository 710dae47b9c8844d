"""The one way work reports its lifecycle: an ``EventSink`` that forwards to the ``task_event`` hook.

Executors (local or distributed) only know this tiny object, not Socket.IO, metrics or logs; every
observer is a plugin implementing ``task_event``. An observer that raises must neither fail the task it
observes nor keep the other observers (the Socket.IO notifier, metrics) from seeing the event, so each
implementation is called on its own and its errors are logged and swallowed here.
"""

from __future__ import annotations

import logging

import pluggy

from .tasks import TaskEvent

log = logging.getLogger(__name__)


class EventSink:
    """Forwards :class:`TaskEvent` objects to every ``task_event`` hook implementation."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The manager events go to; the built-in executor builds its model/plugin registries from it."""
        return self._pm

    def emit(self, event: TaskEvent) -> None:
        """Deliver ``event`` to every observer; never raises (observers are not part of the task)."""
        kwargs = {"event": event}
        for impl in reversed(self._pm.hook.task_event.get_hookimpls()):  # pluggy's own call order
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception:  # noqa: BLE001 - an observer bug must not fail the work it watches
                log.exception(
                    "task_event observer %s failed for task %s (%s)", impl.plugin_name, event.task_id, event.status
                )
