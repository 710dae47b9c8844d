"""docs/monitoring.md, the Grafana dashboard and the Prometheus rules agree with the code.

Every metric, signal, setting and built-in rule is documented; the dashboard and the rules only use metrics
the plugin exports; the rules pass ``promtool check rules`` and behave as documented under
``promtool test rules`` (Debian's ``prometheus`` package; skipped loudly without it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from lama_cleaner.plugins.monitor.alerts.rules import DEFAULT_RULES
from lama_cleaner.plugins.monitor.config import MonitorConfig, validate_monitor
from lama_cleaner.plugins.monitor.metrics.names import ALL_METRICS
from lama_cleaner.plugins.monitor.metrics.signals import SIGNALS
from tests.support.server_process import REPO_ROOT

DOCS = REPO_ROOT / "docs"
MONITORING = (DOCS / "monitoring.md").read_text(encoding="utf-8")
GRAFANA = DOCS / "grafana" / "lama-cleaner.json"
ALERTS = DOCS / "prometheus" / "alerts.yml"
DECLARED = {spec.name for spec in ALL_METRICS}


def used_metrics(text: str) -> set[str]:
    """``lama_cleaner_*`` names in PromQL, histogram samples (``_bucket``, ``_sum``, ``_count``) by family."""
    used = set()
    for name in re.findall(r"\blama_cleaner_[a-z_]+", text):
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        used.add(family if family in DECLARED else name)
    return used


def section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#|\Z)", MONITORING, re.S | re.M)
    assert match, heading
    return match.group(1)


def table_row(first_cell: str, text: str = MONITORING) -> list[str]:
    row = next((line for line in text.splitlines() if line.startswith(f"| {first_cell} |")), None)
    assert row is not None, f"{first_cell} missing from docs/monitoring.md"
    return [c.strip() for c in row.strip("|").split("|")]


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda s: s.name)
def test_every_metric_is_documented_with_type_and_labels(spec) -> None:
    cells = table_row(f"`{spec.name}`", section("Metric names"))
    assert cells[1] == spec.kind
    assert cells[2] == ", ".join(f"`{label}`" for label in spec.labels)


@pytest.mark.parametrize("name", SIGNALS)
def test_every_signal_is_documented(name: str) -> None:
    assert table_row(f"`{name}`", section("Signals"))[1] == ", ".join(f"`{label}`" for label in SIGNALS[name][0])


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(MonitorConfig)])
def test_every_setting_is_documented(field: str) -> None:
    assert f"| `{field}` |" in section("Settings")


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_every_built_in_rule_is_documented(rule) -> None:
    value = f"{rule.threshold:g}"
    assert f"| `{rule.name}` | `{rule.metric} {rule.op} {value}` |" in section("Built-in rules")


def test_the_documented_rule_example_is_valid() -> None:
    example = re.search(r"```toml\n(\[monitor\].*?)```", MONITORING, re.S).group(1)
    table = tomllib.loads(example)["monitor"]
    cfg = MonitorConfig(**table)
    validate_monitor(cfg)
    assert cfg.alert_rules[0]["name"] == "GpuBacklog"


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    assert used_metrics("\n".join(exprs)) <= DECLARED
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"] for t in p.get("targets", []))


def test_prometheus_rules_use_only_exported_metrics() -> None:
    assert used_metrics(ALERTS.read_text(encoding="utf-8")) <= DECLARED


def _promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if not found:
        message = "promtool is missing (apt-get install prometheus; scripts/test.sh does this)"
        print(f"\n*** MONITOR TEST SKIPPED: {message} ***", file=sys.stderr, flush=True)
        pytest.skip(f"LOUD: {message}")
    return found


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'lama_cleaner_queue_depth{{queue="gpu"}}'
        values: '50 150 150 150 150'
      - series: 'lama_cleaner_scheduler_up'
        values: '1 0 0 1 1'
    alert_rule_test:
      - eval_time: 2m
        alertname: QueueBacklog
        exp_alerts: []
      - eval_time: 3m
        alertname: QueueBacklog
        exp_alerts:
          - exp_labels: {{severity: warning, queue: gpu}}
            exp_annotations: {{summary: "150 tasks wait in queue gpu"}}
      - eval_time: 2m
        alertname: SchedulerDown
        exp_alerts:
          - exp_labels: {{severity: critical}}
            exp_annotations: {{summary: "the scheduler's statistics cannot be read"}}
      - eval_time: 4m
        alertname: SchedulerDown
        exp_alerts: []
"""


def test_promtool_rule_tests(tmp_path) -> None:
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(RULE_TESTS.format(rules=json.dumps(str(ALERTS))))
    result = subprocess.run([_promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
