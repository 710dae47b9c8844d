"""``GET /api/v1/health`` over the blueprint alone: what it answers for services with and without
``health()``, and that a failing check is a 503, never a 500."""

from __future__ import annotations

from typing import Any

from flask import Flask

from lama_cleaner.config import Config
from lama_cleaner.server.api_v1 import register_api

from .stub_service import StubTaskService


class CheckedService(StubTaskService):
    def __init__(self, report: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error

    def health(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def _client(service: StubTaskService):
    app = Flask(__name__)
    config = Config(model="cv2", device="cpu")
    config.distributed.retry_after_s = 7
    register_api(app, service, config)
    return app.test_client()


def test_service_without_health_is_always_ok(client):
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    assert r.headers["Cache-Control"] == "no-store"


def test_ok_report_is_passed_through():
    report = {"status": "ok", "scheduler": "embedded", "scheduler_running": True, "nodes_online": 2,
              "nodes": {"idle": 1, "busy": 1, "draining": 0, "offline": 3}}  # fmt: skip
    r = _client(CheckedService(report)).get("/api/v1/health")
    assert r.status_code == 200 and r.get_json() == report
    assert "Retry-After" not in r.headers


def test_unavailable_report_is_a_503_with_retry_after():
    report = {"status": "unavailable", "reason": "task scheduler stopped: RuntimeError: boom"}
    r = _client(CheckedService(report)).get("/api/v1/health")
    assert r.status_code == 503 and r.get_json() == report
    assert r.headers["Retry-After"] == "7" and r.headers["Content-Type"] == "application/json"


def test_a_check_that_raises_is_a_503_not_a_500():
    r = _client(CheckedService(error=KeyError("nodes"))).get("/api/v1/health")
    assert r.status_code == 503
    assert r.get_json() == {"status": "unavailable", "reason": "health check failed: KeyError: 'nodes'"}


def test_only_get_is_allowed(client):
    r = client.post("/api/v1/health")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"


def test_health_is_in_the_openapi_document(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/api/v1/health"]["get"]
    assert set(op["responses"]) == {"200", "503"}
    assert op["responses"]["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}
    assert set(doc["components"]["schemas"]["Health"]["properties"]) >= {"status", "reason", "nodes_online"}
    assert "/api/v1/health" in client.get("/api/v1/docs").get_data(as_text=True)
