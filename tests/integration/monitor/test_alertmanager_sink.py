"""The Alertmanager sink against a real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``).

The alert engine (its APScheduler job) evaluates a node-offline rule; the sink posts to Alertmanager's v2
API. Alertmanager's own API shows the alert active, and once the node is back, Alertmanager itself sends a
resolved notification to a webhook receiver it is configured with: proof that it took our ``endsAt``.
"""

from __future__ import annotations

import time

import pytest
import requests

from lama_cleaner.plugins.monitor.alerts.engine import AlertEngine
from lama_cleaner.plugins.monitor.alerts.rules import Rule
from lama_cleaner.plugins.monitor.alerts.sinks import Delivery, rfc3339
from lama_cleaner.plugins.monitor.alerts.sinks.alertmanager import AlertmanagerSink
from lama_cleaner.plugins.monitor.alerts.state import AlertTracker
from lama_cleaner.plugins.monitor.metrics.signals import Signal
from tests.integration.monitor.prometheus_tools import alertmanager
from tests.integration.monitor.receiver import Receiver
from tests.support.waiting import wait_for

RULE = Rule("NodeOffline", "node_offline", "==", 1, severity="critical", labels=(("team", "ops"),))
N3 = (("node", "n3"),)


def ours(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["labels"].get("alertname") == "NodeOffline" and a["labels"].get("node") == "n3"]


@pytest.mark.slow
def test_a_firing_then_resolved_alert_reaches_a_real_alertmanager(tmp_path) -> None:
    offline = [1.0]
    with Receiver() as am_webhook, alertmanager(tmp_path, am_webhook.url + "/am") as am:
        sink = AlertmanagerSink(am.url, timeout_s=2, resend_s=60, evaluation_interval_s=0.2)
        engine = AlertEngine(
            AlertTracker([RULE], 3600), lambda: [Signal("node_offline", N3, offline[0])], [sink], interval_s=0.2
        ).start()
        try:

            def active() -> list[dict]:
                return ours(requests.get(am.url + "/api/v2/alerts", timeout=2).json())

            (alert,) = wait_for(active, timeout=20, message="the alert in Alertmanager")
            assert alert["status"]["state"] == "active"
            assert alert["labels"] == {"alertname": "NodeOffline", "severity": "critical", "node": "n3", "team": "ops"}
            assert alert["annotations"]["summary"] == "node_offline == 1 (now 1)"
            firing_note = wait_for(
                lambda: [m for m in am_webhook.accepted if m["status"] == "firing"], 20, "Alertmanager's firing notice"
            )
            assert firing_note[0]["alerts"][0]["labels"]["node"] == "n3"

            offline[0] = 0.0
            wait_for(lambda: not active(), timeout=20, message="the alert to leave Alertmanager's active list")
            resolved = wait_for(
                lambda: [m for m in am_webhook.accepted if m["status"] == "resolved"],
                20,
                "Alertmanager's resolved notice",
            )
            (resolved_alert,) = resolved[0]["alerts"]
            assert resolved_alert["labels"]["alertname"] == "NodeOffline" and resolved_alert["status"] == "resolved"
        finally:
            engine.stop()


def test_firing_alerts_are_resent_and_resolved_ones_sent_once() -> None:
    tracker = AlertTracker([RULE], 3600)
    with Receiver() as receiver:
        sink = AlertmanagerSink(receiver.url, timeout_s=2, resend_s=60, evaluation_interval_s=15)
        start = time.time()
        for offset, value in [(0, 1.0), (15, 1.0), (30, 1.0), (61, 1.0), (75, 0.0), (90, 0.0)]:
            now = start + offset
            notes = tracker.evaluate([Signal("node_offline", N3, value)], now)
            sink.deliver(Delivery(tuple(notes), tuple(tracker.active()), now))
        sink.close()
    assert [a["path"] for a in receiver.attempts] == ["/api/v2/alerts"] * 3  # fired, resent after 60 s, resolved
    first, resent, resolved = receiver.accepted
    assert first[0]["startsAt"] == resent[0]["startsAt"] == resolved[0]["startsAt"]
    assert first[0]["endsAt"] > first[0]["startsAt"]  # a lease: resolves by itself if we stop resending
    assert resent[0]["endsAt"] > first[0]["endsAt"]
    (gone,) = resolved
    assert gone["labels"]["node"] == "n3"
    assert gone["endsAt"] == rfc3339(start + 75)
