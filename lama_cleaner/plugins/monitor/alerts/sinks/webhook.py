"""The ``webhook`` sink: one JSON POST per notification.

Body::

    {"version": 1, "source": "lama-cleaner", "kind": "firing" | "repeat" | "resolved", "at": "<RFC 3339>",
     "alert": {"rule", "state", "severity", "labels", "summary", "value",
               "active_since", "fired_at", "ends_at"}}   # times as RFC 3339 strings or null
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..state import Notification
from . import Delivery, rfc3339
from .http_post import JsonPoster

PAYLOAD_VERSION = 1


def webhook_payload(note: Notification) -> dict[str, Any]:
    alert = note.alert.to_dict()
    for key in ("active_since", "fired_at", "ends_at"):
        alert[key] = rfc3339(alert[key]) if alert[key] is not None else None
    return {
        "version": PAYLOAD_VERSION,
        "source": "lama-cleaner",
        "kind": note.kind,
        "at": rfc3339(note.at),
        "alert": alert,
    }


class WebhookSink:
    """POSTs each notification; retries per ``JsonPoster``."""

    name = "webhook"
    every_evaluation = False

    def __init__(
        self, url: str, *, timeout_s: float, retries: int, backoff_s: float, headers: Mapping[str, str] | None = None
    ) -> None:
        self.poster = JsonPoster(
            url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, headers=headers, what="alert webhook"
        )

    def deliver(self, delivery: Delivery) -> None:
        for note in delivery.notifications:
            self.poster.post(webhook_payload(note))

    def close(self) -> None:
        self.poster.close()
