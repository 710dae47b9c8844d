"""The life of an alert: inactive -> pending -> firing -> resolved, as a pure function of signals and time.

No clock, no thread, no I/O: ``evaluate(signals, now)`` is given the figures and the time and returns the
notifications due, so a recorded sequence with made-up times tests every transition exactly.

- A series whose condition holds becomes **pending**; if it still holds at an evaluation ``for_s`` seconds
  later (every evaluation in between having held too) it is **firing**, and one ``firing`` notification goes
  out. ``for_s = 0`` fires at the first evaluation.
- While firing, a ``repeat`` notification goes out every ``repeat_interval_s``.
- When the condition no longer holds, or the series is gone (a node removed, the scheduler unreadable), a
  firing alert sends one ``resolved`` notification; a pending one is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..metrics.signals import Labels, Signal
from .rules import Rule

NotificationKind = Literal["firing", "repeat", "resolved"]
AlertKey = tuple[str, Labels]  # rule name, series labels


@dataclass(frozen=True)
class AlertView:
    """An alert as sinks and the dashboard see it (a copy; the tracker's own state stays private)."""

    rule: str
    state: str  # "pending", "firing" or "resolved"
    severity: str
    labels: dict[str, str]  # alertname, severity, the series' labels and the rule's own: its identity
    summary: str
    value: float
    active_since: float
    fired_at: float | None
    ends_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "labels": dict(self.labels),
            "summary": self.summary,
            "value": self.value,
            "active_since": self.active_since,
            "fired_at": self.fired_at,
            "ends_at": self.ends_at,
        }


@dataclass(frozen=True)
class Notification:
    """Something a sink should tell someone."""

    kind: NotificationKind
    alert: AlertView
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "alert": self.alert.to_dict()}


@dataclass
class _Alert:
    rule: Rule
    series: Labels
    active_since: float
    value: float
    state: str = "pending"
    fired_at: float | None = None
    last_sent_at: float | None = None

    def view(self, state: str | None = None, ends_at: float | None = None) -> AlertView:
        labels = {"alertname": self.rule.name, "severity": self.rule.severity, **dict(self.series)}
        labels.update(self.rule.labels)
        return AlertView(
            rule=self.rule.name,
            state=state or self.state,
            severity=self.rule.severity,
            labels=labels,
            summary=self.rule.describe(self.series, self.value),
            value=self.value,
            active_since=self.active_since,
            fired_at=self.fired_at,
            ends_at=ends_at,
        )


class AlertTracker:
    """Rules plus the pending and firing alerts; call :meth:`evaluate` at each evaluation time."""

    def __init__(self, rules: Sequence[Rule], repeat_interval_s: float) -> None:
        self.rules = tuple(rules)
        self.repeat_interval_s = repeat_interval_s
        self._alerts: dict[AlertKey, _Alert] = {}

    def evaluate(self, signals: Iterable[Signal], now: float) -> list[Notification]:
        """Advance every alert to ``now`` given the current ``signals``; return the notifications due."""
        signals = list(signals)
        notes: list[Notification] = []
        holding: set[AlertKey] = set()
        latest: dict[AlertKey, float] = {}
        for rule in self.rules:
            for signal in signals:
                if not rule.selects(signal):
                    continue
                key = (rule.name, signal.labels)
                latest[key] = signal.value
                if rule.holds(signal.value):
                    holding.add(key)
                    notes.extend(self._holds(key, rule, signal, now))
        for key in [k for k in self._alerts if k not in holding]:
            alert = self._alerts.pop(key)
            if alert.state == "firing":
                alert.value = latest.get(key, alert.value)
                notes.append(Notification("resolved", alert.view("resolved", ends_at=now), now))
        return notes

    def _holds(self, key: AlertKey, rule: Rule, signal: Signal, now: float) -> list[Notification]:
        alert = self._alerts.get(key)
        if alert is None:
            alert = self._alerts[key] = _Alert(rule, signal.labels, active_since=now, value=signal.value)
        alert.value = signal.value
        if alert.state == "pending" and now - alert.active_since >= rule.for_s:
            alert.state, alert.fired_at, alert.last_sent_at = "firing", now, now
            return [Notification("firing", alert.view(), now)]
        if alert.state == "firing" and alert.last_sent_at is not None:
            if now - alert.last_sent_at >= self.repeat_interval_s:
                alert.last_sent_at = now
                return [Notification("repeat", alert.view(), now)]
        return []

    def active(self) -> list[AlertView]:
        """Pending and firing alerts, firing first, then by rule and labels."""
        views = [a.view() for a in self._alerts.values()]
        return sorted(views, key=lambda v: (v.state != "firing", v.rule, sorted(v.labels.items())))
