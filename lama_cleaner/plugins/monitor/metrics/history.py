"""A fixed number of compact points for the dashboard's charts, so a page opened now shows the last hour.

Flower 1.x drew its graphs only from what the open page had seen; here the server keeps a ring of points
(bounded: ``history_points`` of them, at most one per ``step_s``), so memory does not grow with uptime and
a reload does not start from an empty chart. Prometheus remains the place for long history.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


def history_point(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The part of a ``/api/v1/metrics`` document the charts draw (the page makes the same from live ones)."""
    overall = snapshot["latency"]["all"]
    return {
        "time": snapshot["time"],
        "queues": {q["name"]: q["queued"] for q in snapshot["queues"]},
        "finished_total": dict(snapshot["tasks"]["finished_total"]),
        "run_p50_s": overall["run_p50_s"],
        "run_p95_s": overall["run_p95_s"],
        "wait_p95_s": overall["wait_p95_s"],
    }


class History:
    """The last ``size`` points, no two closer than ``step_s`` seconds."""

    def __init__(self, size: int, step_s: float) -> None:
        self.step_s = step_s
        self._points: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, point: dict[str, Any]) -> bool:
        """Keep ``point`` unless the last one kept is younger than ``step_s``; True if kept."""
        with self._lock:
            if self._points and point["time"] - self._points[-1]["time"] < self.step_s:
                return False
            self._points.append(point)
            return True

    def points(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._points)
