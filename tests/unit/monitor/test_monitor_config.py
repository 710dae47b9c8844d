"""``[monitor]`` values are checked at start-up, each refusal naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.monitor.config import TASK_BUCKETS_S, MonitorConfig, validate_monitor


def test_defaults_are_valid_and_documented() -> None:
    cfg = MonitorConfig()
    validate_monitor(cfg)
    for f in dataclasses.fields(MonitorConfig):
        assert f.metadata.get("help"), f"monitor.{f.name} has no help text"
    assert cfg.log_diagnose is False  # variable values in tracebacks only when asked
    assert cfg.metrics_host == "127.0.0.1"
    assert TASK_BUCKETS_S[0] <= 0.05 and TASK_BUCKETS_S[-1] >= 300  # tens of ms to several minutes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window_s": 0}, "monitor.window_s must be > 0, got 0"),
        ({"evaluation_interval_s": float("nan")}, "monitor.evaluation_interval_s must be > 0"),
        ({"webhook_retries": -1}, "monitor.webhook_retries must be >= 0, got -1"),
        ({"metrics_port": 70000}, "monitor.metrics_port must be 1-65535, got 70000"),
        ({"metrics_port": "9100"}, "monitor.metrics_port must be an integer or null, got '9100' (str)"),
        ({"task_buckets_s": [1.0, 0.5]}, "monitor.task_buckets_s must be strictly increasing"),
        ({"http_buckets_s": []}, "monitor.http_buckets_s must list at least one bucket bound"),
        ({"task_buckets_s": [0.0, 1.0]}, "monitor.task_buckets_s bounds must be positive finite seconds"),
        ({"log_format": "xml"}, "monitor.log_format must be one of text, json, got 'xml'"),
        ({"log_level": "LOUD"}, "monitor.log_level must be one of TRACE, DEBUG, INFO"),
        ({"log_rotation": "sometimes"}, "monitor.log_rotation is not understood: 'sometimes'"),
        ({"log_retention": "forever-ish"}, "monitor.log_retention is not understood: 'forever-ish'"),
        ({"log_retention": 0}, "monitor.log_retention must keep at least 1 file, got 0"),
        ({"log_compression": "rar"}, "monitor.log_compression must be one of gz"),
        ({"alert_sinks": ["log", "pager"]}, "monitor.alert_sinks must be one of log, dashboard, webhook, alertmanager"),
        ({"alert_sinks": ["log", "log"]}, "monitor.alert_sinks names a sink twice"),
        ({"alert_sinks": ["webhook"]}, "monitor.webhook_url must be set for the webhook sink"),
        (
            {"alert_sinks": ["alertmanager"], "alertmanager_url": "localhost:9093"},
            "monitor.alertmanager_url must be an http:// or https:// URL, got 'localhost:9093'",
        ),
        ({"history_points": 1}, "monitor.history_points must be >= 2, got 1"),
        ({"webhook_headers": {"X-Token": 5}}, "monitor.webhook_headers must be a table of strings"),
    ],
)
def test_bad_values_are_refused_with_the_key(changes, message) -> None:
    cfg = dataclasses.replace(MonitorConfig(), **changes)
    with pytest.raises(ConfigError) as info:
        validate_monitor(cfg)
    assert message in str(info.value)


def test_values_are_normalised() -> None:
    cfg = dataclasses.replace(MonitorConfig(), log_level="debug", log_format="JSON", window_s=60, log_retention=5)
    validate_monitor(cfg)
    assert (cfg.log_level, cfg.log_format, cfg.window_s, cfg.log_retention) == ("DEBUG", "json", 60.0, 5)
    assert isinstance(cfg.window_s, float)


def test_loguru_accepts_what_validation_accepts() -> None:
    for rotation in ("100 MB", "1 day", "00:00", "1 week"):
        validate_monitor(dataclasses.replace(MonitorConfig(), log_rotation=rotation, log_compression="gz"))
