"""The webhook sink against a real local HTTP receiver: delivery, a retry after one failure, give-up rules."""

from __future__ import annotations

import json
import time

from lama_cleaner.plugins.monitor.alerts.engine import AlertEngine
from lama_cleaner.plugins.monitor.alerts.rules import Rule
from lama_cleaner.plugins.monitor.alerts.sinks import Delivery
from lama_cleaner.plugins.monitor.alerts.sinks.webhook import WebhookSink
from lama_cleaner.plugins.monitor.alerts.state import AlertTracker
from lama_cleaner.plugins.monitor.metrics.signals import Signal
from tests.integration.monitor.receiver import Receiver
from tests.support.waiting import wait_for

RULE = Rule("NodeOffline", "node_offline", "==", 1, severity="critical", summary="node {node} is offline")
N3 = (("node", "n3"),)


def firing_delivery(now: float = 1_700_000_000.0) -> Delivery:
    tracker = AlertTracker([RULE], repeat_interval_s=3600)
    notes = tracker.evaluate([Signal("node_offline", N3, 1.0)], now)
    return Delivery(tuple(notes), tuple(tracker.active()), now)


def test_delivers_after_the_receiver_fails_once() -> None:
    with Receiver(failures=1) as receiver:
        sink = WebhookSink(receiver.url + "/hook", timeout_s=2, retries=3, backoff_s=0.05, headers={"X-Token": "s3"})
        started = time.monotonic()
        sink.deliver(firing_delivery())
        sink.close()
    assert len(receiver.attempts) == 2  # one failure, one success, no more
    assert time.monotonic() - started >= 0.05  # it waited the back-off before trying again
    assert receiver.attempts[0]["body"] == receiver.attempts[1]["body"]
    assert receiver.attempts[1]["headers"]["X-Token"] == "s3"
    assert receiver.attempts[1]["headers"]["Content-Type"] == "application/json"
    (payload,) = receiver.accepted
    assert payload == {
        "version": 1,
        "source": "lama-cleaner",
        "kind": "firing",
        "at": "2023-11-14T22:13:20.000Z",
        "alert": {
            "rule": "NodeOffline",
            "state": "firing",
            "severity": "critical",
            "labels": {"alertname": "NodeOffline", "severity": "critical", "node": "n3"},
            "summary": "node n3 is offline",
            "value": 1.0,
            "active_since": "2023-11-14T22:13:20.000Z",
            "fired_at": "2023-11-14T22:13:20.000Z",
            "ends_at": None,
        },
    }


def test_gives_up_after_the_retries() -> None:
    with Receiver(failures=10) as receiver:
        sink = WebhookSink(receiver.url, timeout_s=2, retries=2, backoff_s=0.01)
        sink.deliver(firing_delivery())
        sink.close()
    assert len(receiver.attempts) == 3 and receiver.accepted == []


def test_a_client_error_is_not_retried() -> None:
    with Receiver(failures=1, fail_status=400) as receiver:
        sink = WebhookSink(receiver.url, timeout_s=2, retries=3, backoff_s=0.01)
        sink.deliver(firing_delivery())
        sink.close()
    assert len(receiver.attempts) == 1


def test_no_listener_is_retried_then_given_up(unused_port_url: str) -> None:
    sink = WebhookSink(unused_port_url, timeout_s=1, retries=1, backoff_s=0.01)
    assert sink.poster.post({"x": 1}) is False


def test_engine_job_delivers_firing_and_resolved_through_the_webhook() -> None:
    offline = [1.0]

    def signals() -> list[Signal]:
        return [Signal("node_offline", N3, offline[0])]

    with Receiver(failures=1) as receiver:
        sink = WebhookSink(receiver.url, timeout_s=2, retries=3, backoff_s=0.05)
        engine = AlertEngine(AlertTracker([RULE], repeat_interval_s=3600), signals, [sink], interval_s=0.1).start()
        try:
            wait_for(lambda: [p["kind"] for p in receiver.accepted] == ["firing"], timeout=10, message="firing")
            offline[0] = 0.0
            wait_for(lambda: [p["kind"] for p in receiver.accepted] == ["firing", "resolved"], 10, "resolved")
        finally:
            engine.stop()
    resolved = receiver.accepted[1]["alert"]
    assert resolved["state"] == "resolved" and resolved["ends_at"] is not None and resolved["value"] == 0.0
    assert json.loads(receiver.attempts[0]["body"])["kind"] == "firing"  # the one that failed was retried
