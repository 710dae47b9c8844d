"""Graceful stop of the web server: on SIGTERM new work is refused with 503, requests in flight finish.

Why a drain before the HTTP server's own graceful stop: gunicorn stops accepting connections at
once, so a client arriving during a deploy would hang in the listen backlog and then be reset; here
it gets a 503 with ``Retry-After`` (JSON under ``/api/v1``, plain text elsewhere) and retries
elsewhere, and ``/api/v1/health`` says ``unavailable`` so a load balancer stops sending. Reads
(task status, results) are still served while the drain lasts, so clients can collect what they
submitted. The drain ends when no request is in flight or after ``server.shutdown_grace_s``.

Tasks accepted through ``/api/v1`` are in the journal already (distributed mode): whatever is still
queued or running when the process stops is recovered by the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app, g, request

from ..errors import Overloaded

log = logging.getLogger(__name__)

EXTENSION_KEY = "lama_cleaner.drain"
WORK_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Requests that start or change work; refused while draining. GET and HEAD are still answered."""
RETRY_AFTER_S = 5


class ShuttingDown(Overloaded):
    code = "shutting_down"


class Drain:
    """Counts requests in flight and, once :meth:`begin` is called, refuses new work."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False

    @classmethod
    def install(cls, app: Flask, grace_s: float) -> Drain:
        drain = cls(grace_s)
        app.before_request(drain._before)
        app.teardown_request(drain._after)
        app.extensions[EXTENSION_KEY] = drain
        return drain

    @property
    def draining(self) -> bool:
        return self._draining

    def _before(self) -> None:
        with self._cond:
            if self._draining and request.method in WORK_METHODS:
                raise ShuttingDown("Server is shutting down; retry later", retry_after=RETRY_AFTER_S)
            self._in_flight += 1
        g.lama_cleaner_in_flight = True

    def _after(self, _exc: BaseException | None) -> None:
        if not g.pop("lama_cleaner_in_flight", False):
            return
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def begin(self, on_drained: Callable[[], None]) -> None:
        """Start refusing work; call ``on_drained`` (from another thread) once nothing is in flight or
        the grace period is over. A second call (a second SIGTERM) changes nothing."""
        with self._cond:
            if self._draining:
                return
            self._draining = True
            log.info(
                "SIGTERM: refusing new work, waiting up to %gs for %d request(s) in flight",
                self.grace_s,
                self._in_flight,
            )
        threading.Thread(target=self._wait, args=(on_drained,), name="http-drain", daemon=True).start()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight, False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _wait(self, on_drained: Callable[[], None]) -> None:
        if not self.wait_idle(self.grace_s):
            log.warning("%d request(s) still in flight after %gs; stopping anyway", self._in_flight, self.grace_s)
        on_drained()


def draining() -> bool:
    """True while the current app is shutting down (for ``/api/v1/health``)."""
    drain: Drain | None = current_app.extensions.get(EXTENSION_KEY)
    return drain is not None and drain.draining
