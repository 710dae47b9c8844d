"""The ``dashboard`` sink: the alerts the ``/monitor`` page and ``/api/v1/metrics`` show.

Holds the active alerts of the last evaluation and the last few resolved ones (so a page opened a minute
after an alert cleared still says it happened); a fixed number, so memory does not grow.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from . import Delivery

RESOLVED_KEPT = 20


class DashboardSink:
    name = "dashboard"
    every_evaluation = True

    def __init__(self) -> None:
        self._active: list[dict[str, Any]] = []
        self._resolved: deque[dict[str, Any]] = deque(maxlen=RESOLVED_KEPT)
        self._lock = threading.Lock()

    def deliver(self, delivery: Delivery) -> None:
        active = [a.to_dict() for a in delivery.active]
        resolved = [n.alert.to_dict() for n in delivery.notifications if n.kind == "resolved"]
        with self._lock:
            self._active = active
            self._resolved.extend(resolved)

    def current(self) -> list[dict[str, Any]]:
        """Firing and pending alerts, then the recently resolved ones (newest first)."""
        with self._lock:
            return [*self._active, *reversed(self._resolved)]

    def close(self) -> None:
        return None
