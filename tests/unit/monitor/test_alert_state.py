"""Recorded sequences of signals at made-up times through the alert state machine.

Each step is (time, queue depth or None for "series gone") and the notifications expected at that step; the
rule is "queue_depth > 10 for 30 s", evaluated every 10 s, repeating every 60 s.
"""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.monitor.alerts.rules import DEFAULT_RULES, Rule, parse_rule
from lama_cleaner.plugins.monitor.alerts.state import AlertTracker
from lama_cleaner.plugins.monitor.metrics.signals import Signal

GPU = (("queue", "gpu"),)
RULE = Rule(
    "Backlog",
    "queue_depth",
    ">",
    10,
    for_s=30,
    severity="warning",
    labels=(("team", "ops"),),
    summary="{value:.0f} tasks wait in {queue}",
)


def depth(value: float | None, labels=GPU) -> list[Signal]:
    return [] if value is None else [Signal("queue_depth", labels, value)]


def run(steps: list[tuple[float, float | None]], rule: Rule = RULE, repeat: float = 60) -> list[tuple[float, str]]:
    tracker = AlertTracker([rule], repeat_interval_s=repeat)
    out = []
    for now, value in steps:
        out.extend((n.at, n.kind) for n in tracker.evaluate(depth(value), now))
    return out


def test_fires_once_after_the_for_duration_repeats_and_resolves() -> None:
    steps = [
        (0, 5),
        (10, 20),
        (20, 20),
        (30, 20),
        (40, 20),
        (50, 20),
        (60, 20),
        (100, 20),
        (110, 20),
        (120, 3),
        (130, 3),
    ]
    # pending at 10; firing at 40 (30 s after 10); repeat 60 s after the last notice (100); resolved at 120.
    assert run(steps) == [(40, "firing"), (100, "repeat"), (120, "resolved")]


def test_a_dip_while_pending_restarts_the_for_duration() -> None:
    steps = [(0, 20), (10, 20), (20, 5), (30, 20), (40, 20), (50, 20), (60, 20)]
    assert run(steps) == [(60, "firing")]  # pending again from 30, so it fires at 60, not at 30


def test_pending_alerts_resolve_silently() -> None:
    assert run([(0, 20), (10, 20), (20, 5), (30, 5)]) == []


def test_a_series_that_disappears_resolves() -> None:
    assert run([(0, 20), (30, 20), (40, None)]) == [(30, "firing"), (40, "resolved")]


def test_for_zero_fires_at_the_first_evaluation() -> None:
    rule = Rule("NodeOffline", "node_offline", "==", 1)
    tracker = AlertTracker([rule], repeat_interval_s=3600)
    n3 = (("node", "n3"),)
    notes = tracker.evaluate([Signal("node_offline", n3, 1.0), Signal("node_offline", (("node", "n1"),), 0.0)], 5.0)
    assert [(n.kind, n.alert.labels) for n in notes] == [
        ("firing", {"alertname": "NodeOffline", "severity": "warning", "node": "n3"})
    ]


def test_each_series_is_an_alert_of_its_own() -> None:
    tracker = AlertTracker([RULE], repeat_interval_s=3600)
    cpu = (("queue", "cpu"),)
    for now in (0, 30):
        notes = tracker.evaluate(depth(50) + depth(11, cpu), now)
    assert sorted(n.alert.labels["queue"] for n in notes) == ["cpu", "gpu"]
    notes = tracker.evaluate(depth(50) + depth(2, cpu), 40)
    assert [(n.kind, n.alert.labels["queue"]) for n in notes] == [("resolved", "cpu")]
    assert [(a.state, a.labels["queue"]) for a in tracker.active()] == [("firing", "gpu")]


def test_notifications_carry_identity_summary_and_times() -> None:
    tracker = AlertTracker([RULE], repeat_interval_s=3600)
    tracker.evaluate(depth(20), 100.0)
    assert [(a.state, a.active_since, a.fired_at) for a in tracker.active()] == [("pending", 100.0, None)]
    (firing,) = tracker.evaluate(depth(25), 130.0)
    assert firing.alert.labels == {"alertname": "Backlog", "severity": "warning", "queue": "gpu", "team": "ops"}
    assert firing.alert.summary == "25 tasks wait in gpu"
    assert (firing.alert.active_since, firing.alert.fired_at, firing.alert.ends_at) == (100.0, 130.0, None)
    (resolved,) = tracker.evaluate(depth(4), 140.0)
    assert resolved.kind == "resolved" and resolved.alert.state == "resolved"
    assert (resolved.alert.ends_at, resolved.alert.value, resolved.alert.summary) == (140.0, 4.0, "4 tasks wait in gpu")
    assert tracker.active() == []


def test_match_selects_series() -> None:
    rule = parse_rule(
        {"name": "GpuBacklog", "metric": "queue_depth", "op": ">", "threshold": 1, "match": {"queue": "gpu"}}, "r"
    )
    tracker = AlertTracker([rule], repeat_interval_s=3600)
    notes = tracker.evaluate(depth(5) + depth(5, (("queue", "cpu"),)), 0)
    assert [n.alert.labels["queue"] for n in notes] == ["gpu"]


def test_nan_never_holds() -> None:
    rule = Rule("Up", "scheduler_up", "!=", 1)
    assert not rule.holds(float("nan"))


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_default_rules_describe_themselves(rule: Rule) -> None:
    labels = (("node", "n1"), ("queue", "gpu"))
    text = rule.describe(labels, 0.5)
    assert "?" not in text and "{" not in text
