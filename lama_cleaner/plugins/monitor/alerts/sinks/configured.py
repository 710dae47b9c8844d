"""The built-in sinks named by ``monitor.alert_sinks``, built from their settings."""

from __future__ import annotations

from ...config import MonitorConfig
from . import AlertSink
from .alertmanager import AlertmanagerSink
from .dashboard import DashboardSink
from .log import LogSink
from .webhook import WebhookSink


def configured_sinks(cfg: MonitorConfig) -> list[AlertSink]:
    """One sink per name in ``alert_sinks``, in that order (``validate_monitor`` has checked the URLs)."""
    sinks: list[AlertSink] = []
    for name in cfg.alert_sinks:
        if name == "log":
            sinks.append(LogSink())
        elif name == "dashboard":
            sinks.append(DashboardSink())
        elif name == "webhook":
            assert cfg.webhook_url is not None
            sinks.append(
                WebhookSink(
                    cfg.webhook_url,
                    timeout_s=cfg.webhook_timeout_s,
                    retries=cfg.webhook_retries,
                    backoff_s=cfg.webhook_backoff_s,
                    headers=cfg.webhook_headers,
                )
            )
        elif name == "alertmanager":
            assert cfg.alertmanager_url is not None
            sinks.append(
                AlertmanagerSink(
                    cfg.alertmanager_url,
                    timeout_s=cfg.alertmanager_timeout_s,
                    resend_s=cfg.alertmanager_resend_s,
                    evaluation_interval_s=cfg.evaluation_interval_s,
                )
            )
        else:  # pragma: no cover - validate_monitor refuses other names
            raise ValueError(f"unknown alert sink {name!r}")
    return sinks
