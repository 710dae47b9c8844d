"""POST a JSON body with a timeout, retrying what may succeed later (no answer, 5xx, 429) with back-off.

Shared by the webhook and Alertmanager sinks. Back-off waits on an event, so shutting down interrupts a
wait instead of sitting out the rest of it; a 4xx other than 429 is not retried (sending the same body
again would be refused again).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


class JsonPoster:
    """One target URL; ``post(body)`` returns True once a 2xx answer came."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        headers: Mapping[str, str] | None = None,
        what: str = "POST",
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.what = what
        self._session = requests.Session()
        self._session.headers.update({"Content-Type": "application/json", **(headers or {})})
        self._closing = threading.Event()

    def post(self, body: Any) -> bool:
        data = json.dumps(body).encode()
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            outcome = self._attempt(data)
            if outcome is None:
                return True
            last_try = attempt == self.retries
            retryable, reason = outcome
            if not retryable or last_try:
                log.error("%s to %s failed for good after %d attempt(s): %s", self.what, self.url, attempt + 1, reason)
                return False
            log.warning("%s to %s failed (%s); retrying in %.1f s", self.what, self.url, reason, delay)
            if self._closing.wait(delay):
                return False  # shutting down
            delay = min(delay * 2, MAX_BACKOFF_S)
        return False

    def _attempt(self, data: bytes) -> tuple[bool, str] | None:
        """None on success, else (worth retrying, why)."""
        try:
            response = self._session.post(self.url, data=data, timeout=self.timeout_s)
        except requests.RequestException as exc:
            return True, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        reason = f"HTTP {response.status_code} {response.text[:200]!r}"
        return response.status_code >= 500 or response.status_code == 429, reason

    def close(self) -> None:
        self._closing.set()
        self._session.close()
