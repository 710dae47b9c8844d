"""The ``log`` sink: one line per notification in the process's log (and so in its JSON lines)."""

from __future__ import annotations

import logging

from . import Delivery

log = logging.getLogger("lama_cleaner.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LogSink:
    """Firing and repeat notices at the alert's severity (critical as ERROR), resolved ones at INFO."""

    name = "log"
    every_evaluation = False

    def deliver(self, delivery: Delivery) -> None:
        for note in delivery.notifications:
            alert = note.alert
            level = logging.INFO if note.kind == "resolved" else _LEVELS.get(alert.severity, logging.WARNING)
            labels = ", ".join(
                f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity")
            )
            log.log(
                level,
                "alert %s %s (%s): %s",
                alert.rule,
                note.kind,
                labels or "no labels",
                alert.summary,
                extra={"alert": alert.rule, "alert_state": note.kind, "severity": alert.severity},
            )

    def close(self) -> None:
        return None
