"""The ``alertmanager`` sink: Prometheus Alertmanager's v2 API (``POST /api/v2/alerts``).

Alertmanager identifies an alert by its labels and resolves one it has not heard of within its
``endsAt`` (or its ``resolve_timeout``). So every firing alert is posted again at least every
``resend_s`` with ``endsAt`` a few resend periods ahead (if this process dies, the alert resolves by itself
soon after), and a resolved alert is posted once more with ``endsAt`` = the time it resolved.
"""

from __future__ import annotations

from typing import Any

from ..state import AlertView
from . import Delivery, rfc3339
from .http_post import JsonPoster

HOLD_PERIODS = 4
"""A firing alert's ``endsAt`` is this many resend periods (or evaluation intervals, if longer) ahead."""


def alertmanager_alert(alert: AlertView, ends_at: float) -> dict[str, Any]:
    starts_at = alert.fired_at if alert.fired_at is not None else alert.active_since
    return {
        "labels": dict(alert.labels),
        "annotations": {"summary": alert.summary, "value": f"{alert.value:g}"},
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at),
    }


class AlertmanagerSink:
    """Posts the firing alerts when something changed or ``resend_s`` has passed, and resolved ones once."""

    name = "alertmanager"
    every_evaluation = True

    def __init__(
        self, base_url: str, *, timeout_s: float, resend_s: float, evaluation_interval_s: float, retries: int = 2
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.resend_s = resend_s
        self.hold_s = HOLD_PERIODS * max(resend_s, evaluation_interval_s)
        self.poster = JsonPoster(
            self.url, timeout_s=timeout_s, retries=retries, backoff_s=1.0, what="Alertmanager alerts"
        )
        self._last_post: float | None = None

    def deliver(self, delivery: Delivery) -> None:
        now = delivery.at
        firing = [a for a in delivery.active if a.state == "firing"]
        resolved = [n.alert for n in delivery.notifications if n.kind == "resolved"]
        changed = any(n.kind != "repeat" for n in delivery.notifications)
        due = self._last_post is None or now - self._last_post >= self.resend_s
        if not (firing or resolved) or not (changed or due):
            return
        body = [alertmanager_alert(a, now + self.hold_s) for a in firing]
        body += [alertmanager_alert(a, a.ends_at if a.ends_at is not None else now) for a in resolved]
        if self.poster.post(body):
            self._last_post = now

    def close(self) -> None:
        self.poster.close()
