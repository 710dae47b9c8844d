"""Alert rules: what to test, against which threshold, for how long, and what to say.

A rule names a signal (see ``metrics.signals.SIGNALS``), a comparison and a threshold; it is tested on every
series of that signal (one per queue, per node, ...) that its ``match`` labels select, and each series that
holds for ``for_s`` seconds becomes an alert of its own. Rules come from the configuration (a list of tables)
and are parsed here into frozen values; a mistake names its key (``monitor.alert_rules[2].threshold``).
"""

from __future__ import annotations

import math
import operator
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ....config import ConfigError
from ..metrics.signals import SIGNALS, Labels, Signal


class RuleSettings(Protocol):
    """The two settings rules are built from (``MonitorConfig`` has them; the config module imports this one)."""

    alert_rules: list[dict[str, Any]]
    default_alert_rules: bool


COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SEVERITIES = ("info", "warning", "critical")
RESERVED_LABELS = ("alertname", "severity")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYS = ("name", "metric", "op", "threshold", "for_s", "severity", "labels", "match", "summary")


@dataclass(frozen=True)
class Rule:
    """One alert rule, parsed and checked."""

    name: str
    metric: str
    op: str
    threshold: float
    for_s: float = 0.0
    severity: str = "warning"
    labels: Labels = ()
    match: Labels = ()
    summary: str = ""

    def selects(self, signal: Signal) -> bool:
        """Whether ``signal`` is one of the series this rule tests."""
        return signal.name == self.metric and all(pair in signal.labels for pair in self.match)

    def holds(self, value: float) -> bool:
        """Whether the condition is true for ``value`` (never for NaN)."""
        return not math.isnan(value) and COMPARISONS[self.op](value, self.threshold)

    def describe(self, series: Labels, value: float) -> str:
        """The summary with ``{label}``, ``{value}``, ``{threshold}``, ``{rule}`` and ``{severity}`` filled in."""
        template = self.summary or f"{self.metric} {self.op} {{threshold:g}} (now {{value:g}})"
        fields = {**dict(series), "value": value, "threshold": self.threshold, "rule": self.name}
        fields["severity"] = self.severity
        return _render(template, fields)


def _render(template: str, fields: Mapping[str, Any]) -> str:
    out = []
    for literal, field_name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if field_name is None:
            continue
        value = fields.get(field_name, "?")
        if conversion == "r":
            value = repr(value)
        try:
            out.append(format(value, spec or ""))
        except (ValueError, TypeError):  # "{queue:.1f}": a label is text; show it as it is
            out.append(str(value))
    return "".join(out)


def _rule(name: str, metric: str, op: str, threshold: float, for_s: float, severity: str, summary: str) -> Rule:
    return Rule(name, metric, op, threshold, for_s=for_s, severity=severity, summary=summary)


DEFAULT_RULES: tuple[Rule, ...] = (
    _rule("QueueBacklog", "queue_depth", ">", 100, 120, "warning", "{value:.0f} tasks wait in queue {queue}"),
    _rule(
        "OldestTaskTooOld",
        "queue_oldest_age_seconds",
        ">",
        300,
        60,
        "warning",
        "the oldest task of queue {queue} has waited {value:.0f} s",
    ),
    _rule("NodeOffline", "node_offline", "==", 1, 0, "warning", "node {node} is offline"),
    _rule(
        "TaskFailureRatio",
        "task_failure_ratio",
        ">",
        0.25,
        300,
        "critical",
        "{value:.0%} of recent tasks of queue {queue} failed",
    ),
    _rule(
        "RunTimeP95",
        "task_run_p95_seconds",
        ">",
        120,
        300,
        "warning",
        "95 % of recent tasks of queue {queue} ran in up to {value:.0f} s",
    ),
    _rule("SchedulerDown", "scheduler_up", "==", 0, 60, "critical", "the scheduler's statistics cannot be read"),
)
"""Built in, each replaceable by a configured rule of the same name (or all off with default_alert_rules)."""


def rules_from_config(cfg: RuleSettings, where: str = "monitor.") -> list[Rule]:
    """The rules to evaluate: the defaults (unless turned off), each replaced by a configured one of its name."""
    configured = [parse_rule(data, f"{where}alert_rules[{i}]") for i, data in enumerate(cfg.alert_rules)]
    seen: set[str] = set()
    for i, rule in enumerate(configured):
        if rule.name in seen:
            raise ConfigError(f"{where}alert_rules[{i}].name {rule.name!r} is used by an earlier rule")
        seen.add(rule.name)
    defaults = [r for r in DEFAULT_RULES if r.name not in seen] if cfg.default_alert_rules else []
    return defaults + configured


def parse_rule(data: Any, key: str) -> Rule:
    """One rule from its configuration table."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key} must be a table, got {data!r}")
    for name in data:
        if name not in _KEYS:
            raise ConfigError(f"unknown setting {key}.{name} (a rule has {', '.join(_KEYS)})")
    for name in ("name", "metric", "op", "threshold"):
        if name not in data:
            raise ConfigError(f"{key}.{name} is missing")
    name = _text(data, "name", key)
    if not _NAME.match(name):
        raise ConfigError(f"{key}.name must be letters, digits, '_', '.' or '-' starting with a letter, got {name!r}")
    metric = _text(data, "metric", key)
    if metric not in SIGNALS:
        raise ConfigError(f"{key}.metric {metric!r} is not a signal; known: {', '.join(SIGNALS)}")
    op = _text(data, "op", key)
    if op not in COMPARISONS:
        raise ConfigError(f"{key}.op must be one of {', '.join(COMPARISONS)}, got {op!r}")
    threshold = _number(data, "threshold", key)
    for_s = _number(data, "for_s", key, default=0.0)
    if for_s < 0:
        raise ConfigError(f"{key}.for_s must be >= 0, got {for_s!r}")
    severity = _text(data, "severity", key, default="warning")
    if severity not in SEVERITIES:
        raise ConfigError(f"{key}.severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    signal_labels = SIGNALS[metric][0]
    labels = _labels(data, "labels", key)
    for label, _ in labels:
        if label in RESERVED_LABELS or label in signal_labels:
            raise ConfigError(f"{key}.labels.{label} would replace a label the alert already has")
    match = _labels(data, "match", key)
    for label, _ in match:
        if label not in signal_labels:
            allowed = ", ".join(signal_labels) or "none"
            raise ConfigError(f"{key}.match.{label}: {metric} has no label {label!r} (it has: {allowed})")
    summary = _text(data, "summary", key, default="")
    _check_template(summary, f"{key}.summary")
    return Rule(name, metric, op, threshold, for_s, severity, labels, match, summary)


def _text(data: Mapping[str, Any], name: str, key: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise ConfigError(f"{key}.{name} must be a non-empty string, got {value!r}")
    return value


def _number(data: Mapping[str, Any], name: str, key: str, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}.{name} must be a finite number, got {value!r}")
    return float(value)


def _labels(data: Mapping[str, Any], name: str, key: str) -> Labels:
    value = data.get(name, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{key}.{name} must be a table of strings, got {value!r}")
    for label in value:
        if not isinstance(label, str) or not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ConfigError(f"{key}.{name}.{label} is not a valid label name")
    return tuple(sorted(value.items()))


def _check_template(template: str, key: str) -> None:
    """Plain ``{name}`` or ``{name:spec}`` fields only: no attribute or index access into the values."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{key} is not a valid template: {exc}") from None
    for _, field_name, _, _ in parsed:
        if field_name is not None and not _LABEL_NAME.match(field_name):
            raise ConfigError(f"{key} may only use {{label}}, {{value}} or {{threshold}} fields, got {{{field_name}}}")
