"""The ``[monitor]`` settings and their validation.

Every field is declared with the core's :func:`~lama_cleaner.config.setting`, and the section is given to the
core through the plugin's ``config_sections`` hook (:data:`SECTION`), so ``docs/configuration.md`` is
generated from it and the core configuration never names this plugin. Values a TOML file can hold directly
(strings, numbers, lists, tables) are declared with plain types; what needs more checking (alert rules, the
loguru rotation and retention strings) is checked by :func:`validate_monitor`, which raises a ``ConfigError``
naming the key, so a typo stops start-up with one line instead of surfacing at the first alert or rotation.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import typing
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from ...config import ConfigError, ConfigSection, check_type, setting
from .alerts.rules import rules_from_config

TASK_BUCKETS_S: list[float] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600]
"""Queue-wait and run-time buckets: a cv2 fill takes tens of milliseconds, a diffusion model on a busy GPU
several minutes; the client library's defaults stop at 10 s, where every slow task would land in +Inf."""

HTTP_BUCKETS_S: list[float] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
"""Request durations: most routes answer in milliseconds, but a classic ``/inpaint`` waits for its task."""

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
SINK_NAMES = ("log", "dashboard", "webhook", "alertmanager")


@dataclass
class MonitorConfig:
    """Settings of the ``monitor`` plugin (``[monitor]`` in a config file)."""

    # ------------------------------------------------------------------ metrics
    metrics: bool = setting(
        True, "Serve `/metrics` (Prometheus text) and `/api/v1/metrics` (the same figures as JSON)."
    )
    metrics_host: str = setting(
        "127.0.0.1",
        "Address a standalone scheduler's own metrics server binds (loopback by default: the figures name "
        "nodes and queues, and the endpoint has no authentication).",
    )
    metrics_port: int | None = setting(
        None,
        "Port of a standalone scheduler's own `/metrics` server (unset = none; the web server's `/metrics` "
        "shows the scheduler's figures either way).",
    )
    task_buckets_s: list[float] = setting(TASK_BUCKETS_S, "Histogram buckets (seconds) of queue-wait and run time.")
    http_buckets_s: list[float] = setting(HTTP_BUCKETS_S, "Histogram buckets (seconds) of HTTP request durations.")
    window_s: float = setting(
        300.0,
        "Window of the figures computed from recent tasks (latency percentiles, failure ratio) that the "
        "dashboard shows and alert rules read.",
    )
    window_min_tasks: int = setting(
        5,
        "Tasks a window needs before its failure ratio and percentiles are reported (one failed task out of "
        "one is not a 100 % failure rate worth an alert).",
    )
    history_points: int = setting(
        720,
        "Snapshots the dashboard's charts keep in memory (fixed, so memory does not grow with uptime).",
    )
    # ------------------------------------------------------------------ logs
    log_format: str = setting(
        "text", "Log lines as readable `text` or `json` (one object a line).", choices=LOG_FORMATS
    )
    log_level: str = setting("INFO", "Lowest level written.", choices=LOG_LEVELS)
    task_path_level: str = setting(
        "INFO",
        "Level of a task's path lines (accepted, started, retried, re-queued, completed, cancelled; a failure is "
        "always WARNING). `DEBUG` keeps them out of INFO logs where thousands of tiny tasks a second make them "
        "the monitor's main cost.",
        choices=LOG_LEVELS,
    )
    task_lines_per_s: int = setting(
        100,
        "Routine per-task lines (accepted, started, completed: in the task path and on nodes) a process writes "
        "a second at most; past it the rest of that second's are counted and summarized in one line. "
        "Failures, retries, re-queues and cancellations are always written. `0` writes every line.",
    )
    log_dir: str | None = setting(
        None,
        "Directory of log files, one file per process (`serve.log`, `scheduler.log`, `node-<id>.log`, ...); "
        "unset = standard error only.",
    )
    log_rotation: str = setting(
        "100 MB", "When a log file is rotated: a size (`100 MB`), an age (`1 day`) or a time (`00:00`)."
    )
    log_retention: str | int = setting(
        "14 days", "Which rotated files are kept: an age (`14 days`) or a number of files (`10`)."
    )
    log_compression: str | None = setting(None, "Compress rotated files (`gz`, `bz2`, `xz`, `zip`); unset = no.")
    log_diagnose: bool = setting(
        False,
        "Show variable values in tracebacks. Off by default: they may hold tokens, signed URLs or image data.",
    )
    # ------------------------------------------------------------------ alerts
    default_alert_rules: bool = setting(
        True,
        "Include the built-in rules (backlog, oldest task, node offline, failure ratio, p95 run time, scheduler "
        "unreachable); a rule of yours with the same name replaces one.",
    )
    alert_rules: list[dict[str, Any]] = setting(
        [],
        "Alert rules, each a table: `name`, `metric`, `op` (`>`, `>=`, `<`, `<=`, `==`, `!=`), `threshold`, "
        "`for_s`, `severity`, `labels`, `match`, `summary` (see docs/monitoring.md).",
    )
    alert_sinks: list[str] = setting(
        ["log", "dashboard"],
        "Where notifications go: any of `log`, `dashboard`, `webhook`, `alertmanager`.",
        choices=SINK_NAMES,
    )
    evaluation_interval_s: float = setting(15.0, "How often the alert rules are evaluated.")
    repeat_interval_s: float = setting(3600.0, "How often a firing alert is notified again while it lasts.")
    webhook_url: str | None = setting(None, "URL the `webhook` sink POSTs each notification to (JSON).")
    webhook_timeout_s: float = setting(5.0, "Timeout of one webhook request.")
    webhook_retries: int = setting(3, "Further attempts after a webhook request fails (connection error, 5xx, 429).")
    webhook_backoff_s: float = setting(1.0, "Delay before the first webhook retry; doubles each time.")
    webhook_headers: dict[str, str] = setting({}, "Extra headers of webhook requests (for example a token).")
    alertmanager_url: str | None = setting(
        None, "Base URL of a Prometheus Alertmanager (`http://host:9093`); the sink posts to `/api/v2/alerts`."
    )
    alertmanager_timeout_s: float = setting(5.0, "Timeout of one Alertmanager request.")
    alertmanager_resend_s: float = setting(
        60.0,
        "How often firing alerts are sent to Alertmanager again: it resolves an alert it has not heard of for "
        "a while, so active alerts must be repeated.",
    )


_POSITIVE = ("window_s", "evaluation_interval_s", "repeat_interval_s", "webhook_timeout_s", "alertmanager_timeout_s")
_NON_NEGATIVE = (
    "task_lines_per_s",
    "window_min_tasks",
    "webhook_retries",
    "webhook_backoff_s",
    "alertmanager_resend_s",
)
_COMPRESSIONS = ("gz", "bz2", "xz", "lzma", "tar", "tar.gz", "tar.bz2", "tar.xz", "zip")


def validate_monitor(cfg: MonitorConfig, where: str = "monitor.") -> None:
    """Check every ``[monitor]`` value; raise a ``ConfigError`` naming the first bad key.

    Normalises in place: ints in float fields become floats, ``log_level``/``log_format`` take their
    canonical case. Alert rules are parsed (and thrown away) so a bad rule stops start-up here.
    """
    hints = _field_types()
    for f in fields(MonitorConfig):
        value = check_type(getattr(cfg, f.name), hints[f.name], where + f.name)
        setattr(cfg, f.name, value)
    for name in _POSITIVE:
        _check_number(where + name, getattr(cfg, name), positive=True)
    for name in _NON_NEGATIVE:
        _check_number(where + name, getattr(cfg, name), positive=False)
    if cfg.history_points < 2:
        raise ConfigError(f"{where}history_points must be >= 2, got {cfg.history_points!r}")
    if cfg.metrics_port is not None and not 0 < cfg.metrics_port < 65536:
        raise ConfigError(f"{where}metrics_port must be 1-65535, got {cfg.metrics_port!r}")
    for name in ("task_buckets_s", "http_buckets_s"):
        _check_buckets(where + name, getattr(cfg, name))
    cfg.log_format = _choice(where + "log_format", cfg.log_format.lower(), LOG_FORMATS)
    cfg.log_level = _choice(where + "log_level", cfg.log_level.upper(), LOG_LEVELS)
    cfg.task_path_level = _choice(where + "task_path_level", cfg.task_path_level.upper(), LOG_LEVELS)
    if cfg.log_compression is not None:
        _choice(where + "log_compression", cfg.log_compression, _COMPRESSIONS)
    if isinstance(cfg.log_retention, bool) or not isinstance(cfg.log_retention, (str, int)):
        raise ConfigError(f"{where}log_retention must be a string or an integer, got {cfg.log_retention!r}")
    if isinstance(cfg.log_retention, int) and cfg.log_retention < 1:
        raise ConfigError(f"{where}log_retention must keep at least 1 file, got {cfg.log_retention!r}")
    _check_loguru_file_options(cfg, where)
    for sink in cfg.alert_sinks:
        _choice(where + "alert_sinks", sink, SINK_NAMES)
    if len(set(cfg.alert_sinks)) != len(cfg.alert_sinks):
        raise ConfigError(f"{where}alert_sinks names a sink twice: {cfg.alert_sinks!r}")
    if "webhook" in cfg.alert_sinks:
        _check_url(where + "webhook_url", cfg.webhook_url, "the webhook sink")
    if "alertmanager" in cfg.alert_sinks:
        _check_url(where + "alertmanager_url", cfg.alertmanager_url, "the alertmanager sink")
    rules_from_config(cfg, where)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(MonitorConfig)


def _check_number(key: str, value: float, *, positive: bool) -> None:
    fits = value > 0 if positive else value >= 0
    if not fits or (isinstance(value, float) and not math.isfinite(value)):  # also refuses NaN and infinity
        raise ConfigError(f"{key} must be {'>' if positive else '>='} 0, got {value!r}")


def _check_buckets(key: str, buckets: list[float]) -> None:
    if not buckets:
        raise ConfigError(f"{key} must list at least one bucket bound")
    if any(not math.isfinite(b) or b <= 0 for b in buckets):
        raise ConfigError(f"{key} bounds must be positive finite seconds, got {buckets!r}")
    if any(a >= b for a, b in zip(buckets, buckets[1:], strict=False)):
        raise ConfigError(f"{key} must be strictly increasing, got {buckets!r}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_url(key: str, url: str | None, user: str) -> None:
    if not url:
        raise ConfigError(f"{key} must be set for {user}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key} must be an http:// or https:// URL, got {url!r}")


def _check_loguru_file_options(cfg: MonitorConfig, where: str) -> None:
    """Let loguru itself judge rotation/retention/compression: add a file sink that is never opened.

    ``delay=True`` means the file is created only by the first message, and there is none; the sink
    lives in an empty temporary directory, so removing it cannot apply a retention to real files.
    """
    from loguru import logger

    with tempfile.TemporaryDirectory(prefix="lama-cleaner-log-check-") as folder:
        for key, kwargs in (
            ("log_rotation", {"rotation": cfg.log_rotation}),
            ("log_retention", {"retention": cfg.log_retention}),
        ):
            try:
                handler = logger.add(os.path.join(folder, "check.log"), delay=True, **kwargs)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{where}{key} is not understood: {getattr(cfg, key)!r} ({exc})") from None
            logger.remove(handler)


SECTION = ConfigSection(
    name="monitor",
    schema=MonitorConfig,
    validate=validate_monitor,
    doc=(
        "Settings of the `monitor` plugin (`lama-cleaner --plugins distributed,monitor`): logs, metrics, the "
        "`/monitor` dashboard and alerts; every process of a deployment (web server, scheduler, nodes) reads "
        "this same table. `--log-json` and `--log-dir DIR` set `log_format` and `log_dir` from the command "
        "line of `lama-cleaner`, `lama-cleaner scheduler` and `lama-cleaner node`; `lama-cleaner scheduler` "
        "also takes `--metrics-port PORT`. Besides the types below: buckets strictly increasing, "
        "`webhook_url`/`alertmanager_url` required by their sinks, rotation, retention and alert rules "
        "checked at start-up (see docs/monitoring.md)."
    ),
)
"""What the plugin's ``config_sections`` hook returns."""
