"""HTTP request counts and durations, by route template, from a Flask before/after-request pair.

The route label is the URL rule (``/api/v1/tasks/<task_id>``), never the path, so a task id cannot become a
series of its own; a request no rule matched is counted as ``unmatched``. Cost per request: one
``perf_counter`` on the way in, one on the way out, a dict update and a histogram observation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from flask import Flask, Response, g, request

from .histograms import HistogramSet

UNMATCHED_ROUTE = "unmatched"
_START = "_lama_cleaner_monitor_started"


class HttpMetrics:
    """Requests answered, by (method, route, status), and their durations, by (method, route)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.durations = HistogramSet(buckets)
        self._requests: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def install(self, app: Flask) -> None:
        """Time every request of ``app`` (its blueprints included).

        The start is taken before any other ``before_request`` function runs, so a request another one
        answers early (a refusal, a redirect) is still counted."""
        app.before_request_funcs.setdefault(None, []).insert(0, self._started)
        app.after_request(self._finished)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
        self.durations.observe((method, route), seconds)

    def requests(self) -> dict[tuple[str, str, str], int]:
        """A copy of the counts, keyed by (method, route, status)."""
        with self._lock:
            return dict(self._requests)

    @staticmethod
    def _started() -> None:
        setattr(g, _START, time.perf_counter())

    def _finished(self, response: Response) -> Response:
        started = getattr(g, _START, None)
        if started is not None:  # None: installed while the request was under way
            rule = request.url_rule
            self.record(
                request.method,
                rule.rule if rule is not None else UNMATCHED_ROUTE,
                response.status_code,
                time.perf_counter() - started,
            )
        return response
