"""Alert rules from configuration: parsed, defaults replaced by name, mistakes refused with their key."""

from __future__ import annotations

import dataclasses

import pytest

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.monitor.alerts.rules import DEFAULT_RULES, Rule, parse_rule, rules_from_config
from lama_cleaner.plugins.monitor.config import MonitorConfig, validate_monitor
from lama_cleaner.plugins.monitor.metrics.signals import SIGNALS

GOOD = {
    "name": "GpuBacklog",
    "metric": "queue_depth",
    "op": ">=",
    "threshold": 50,
    "for_s": 60,
    "match": {"queue": "gpu"},
}


def test_a_full_rule() -> None:
    rule = parse_rule(
        {**GOOD, "severity": "critical", "labels": {"team": "ops"}, "summary": "{queue}: {value:.0f}"}, "r"
    )
    assert rule == Rule(
        "GpuBacklog",
        "queue_depth",
        ">=",
        50.0,
        for_s=60.0,
        severity="critical",
        labels=(("team", "ops"),),
        match=(("queue", "gpu"),),
        summary="{queue}: {value:.0f}",
    )
    assert rule.describe((("queue", "gpu"),), 51.2) == "gpu: 51"


def test_defaults_cover_the_issue_and_read_known_signals() -> None:
    metrics = {r.metric for r in DEFAULT_RULES}
    assert {
        "queue_depth",
        "queue_oldest_age_seconds",
        "node_offline",
        "task_failure_ratio",
        "task_run_p95_seconds",
    } <= metrics
    assert metrics <= set(SIGNALS)


def test_a_configured_rule_replaces_the_default_of_its_name() -> None:
    mine = {"name": "QueueBacklog", "metric": "queue_depth", "op": ">", "threshold": 5}
    rules = rules_from_config(MonitorConfig(alert_rules=[mine, GOOD]))
    assert [r.name for r in rules].count("QueueBacklog") == 1
    assert next(r for r in rules if r.name == "QueueBacklog").threshold == 5
    assert rules[-1].name == "GpuBacklog"
    assert [r.name for r in rules_from_config(MonitorConfig(default_alert_rules=False, alert_rules=[GOOD]))] == [
        "GpuBacklog"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": "50"}, "monitor.alert_rules[0].threshold must be a finite number, got '50'"),
        ({"threshold": float("inf")}, "monitor.alert_rules[0].threshold must be a finite number"),
        (
            {"metric": "queue_lenght"},
            "monitor.alert_rules[0].metric 'queue_lenght' is not a signal; known: queue_depth,",
        ),
        ({"op": "=>"}, "monitor.alert_rules[0].op must be one of >, >=, <, <=, ==, !=, got '=>'"),
        ({"for_s": -1}, "monitor.alert_rules[0].for_s must be >= 0"),
        ({"severity": "urgent"}, "monitor.alert_rules[0].severity must be one of info, warning, critical"),
        ({"name": "has space"}, "monitor.alert_rules[0].name must be letters"),
        (
            {"match": {"node": "n1"}},
            "monitor.alert_rules[0].match.node: queue_depth has no label 'node' (it has: queue)",
        ),
        ({"labels": {"queue": "x"}}, "monitor.alert_rules[0].labels.queue would replace a label the alert already has"),
        ({"labels": {"alertname": "x"}}, "monitor.alert_rules[0].labels.alertname would replace"),
        ({"labels": {"team": 1}}, "monitor.alert_rules[0].labels must be a table of strings"),
        ({"labels": {"__x": "y"}}, "monitor.alert_rules[0].labels.__x is not a valid label name"),
        (
            {"summary": "{value.__class__}"},
            "monitor.alert_rules[0].summary may only use {label}, {value} or {threshold}",
        ),
        ({"summary": "{unclosed"}, "monitor.alert_rules[0].summary is not a valid template"),
        ({"thresold": 3}, "unknown setting monitor.alert_rules[0].thresold"),
    ],
)
def test_mistakes_name_their_key(change, message) -> None:
    cfg = MonitorConfig(alert_rules=[{**GOOD, **change}])
    with pytest.raises(ConfigError) as info:
        validate_monitor(cfg)
    assert message in str(info.value)


def test_missing_fields_and_duplicates() -> None:
    with pytest.raises(ConfigError, match=r"monitor.alert_rules\[1\].threshold is missing"):
        validate_monitor(MonitorConfig(alert_rules=[GOOD, {"name": "X", "metric": "queue_depth", "op": ">"}]))
    with pytest.raises(ConfigError, match=r"monitor.alert_rules\[1\].name 'GpuBacklog' is used by an earlier rule"):
        validate_monitor(MonitorConfig(alert_rules=[GOOD, GOOD]))
    with pytest.raises(
        ConfigError, match=r"monitor.alert_rules must be a list of tables of values, got \['QueueBacklog'\]"
    ):
        validate_monitor(dataclasses.replace(MonitorConfig(), alert_rules=["QueueBacklog"]))
    with pytest.raises(ConfigError, match=r"r\[3\] must be a table, got 'QueueBacklog'"):
        parse_rule("QueueBacklog", "r[3]")
