"""Where alert notifications go: the interface every sink implements, and what it is handed.

After each evaluation the engine hands every sink a :class:`Delivery`: the notifications due (firing, repeat,
resolved) and the alerts active now. A sink that only tells people (log, webhook) reads the notifications; a
sink that mirrors state (Alertmanager, which forgets alerts it is not reminded of; the dashboard) reads the
active list and asks for every delivery, empty ones included, with ``every_evaluation = True``.

Each sink runs on its own thread (see ``alerts.engine``), so a slow webhook never delays the evaluation or
another sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ..state import AlertView, Notification


@dataclass(frozen=True)
class Delivery:
    """What one evaluation produced."""

    notifications: tuple[Notification, ...]
    active: tuple[AlertView, ...]  # pending and firing
    at: float


class AlertSink(Protocol):
    """A destination of notifications (third-party sinks come through the monitor's ``alert_sinks`` hook)."""

    name: str
    every_evaluation: bool

    def deliver(self, delivery: Delivery) -> None:
        """Send what ``delivery`` asks for; may block (it runs on the sink's own thread), may raise."""

    def close(self) -> None:
        """Stop waiting (retry back-offs) and release connections; called once, at shutdown."""


def rfc3339(timestamp: float) -> str:
    """``2024-05-01T12:00:00.123Z``: the time format Alertmanager and most webhook receivers expect."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
