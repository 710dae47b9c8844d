"""The autoscale routes' error mapping (Flask's test client, a handle that answers like the real ones),
and their entries in the API's OpenAPI document (valid, with every answer the routes give)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from lama_cleaner.config import Config
from lama_cleaner.plugins.autoscale.openapi import add_autoscale_paths
from lama_cleaner.plugins.autoscale.routes import register_autoscale_routes
from lama_cleaner.plugins.autoscale.runtime import SCALE_CALL, STATUS_CALL, call_error
from lama_cleaner.server.api_docs import build_openapi
from lama_cleaner.server.api_v1 import OPENAPI_EXTENSIONS_KEY


class Handle:
    """Answers ``call`` as the scheduler's process would, recording what it was asked."""

    def __init__(self, answer: Any = None, raises: BaseException | None = None) -> None:
        self.answer, self.raises, self.calls = answer, raises, []

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, payload))
        if self.raises is not None:
            raise self.raises
        return self.answer


def client_for(handle: Any) -> Any:
    app = Flask("autoscale-routes")
    register_autoscale_routes(app, SimpleNamespace(scheduler_handle=handle))
    return app.test_client(), app


def test_status_and_scale_go_through_the_scheduler_handle():
    handle = Handle({"queues": {}, "decisions": []})
    client, _ = client_for(handle)
    assert client.get("/api/v1/autoscale").get_json() == {"queues": {}, "decisions": []}
    handle.answer = {"outcome": {"action": "scale_up"}}
    response = client.post("/api/v1/queues/cpu/scale", json={"nodes": "+2"})
    assert response.status_code == 202 and response.get_json() == {"outcome": {"action": "scale_up"}}
    assert handle.calls == [(STATUS_CALL, {}), (SCALE_CALL, {"queue": "cpu", "nodes": "+2"})]


@pytest.mark.parametrize(
    ("handle", "status", "code"),
    [
        (None, 503, "autoscale_unavailable"),  # classic mode: no scheduler handle
        (Handle(raises=LookupError("autoscale.status")), 503, "autoscale_unavailable"),  # no autoscaler there
        (Handle(raises=TimeoutError("no answer in 5 s")), 503, "scheduler_unavailable"),
        (Handle(raises=RuntimeError("scheduler call 'autoscale.status' failed: boom")), 503, "autoscale_unavailable"),
        (Handle(raises=ValueError("bug")), 500, "internal_error"),
        (Handle(call_error(404, "unknown_queue", "queue 'x' is not autoscaled")), 404, "unknown_queue"),
    ],
)
def test_failures_are_api_errors(handle, status, code):
    client, _ = client_for(handle)
    for response in (client.get("/api/v1/autoscale"), client.post("/api/v1/queues/x/scale", json={"nodes": "=1"})):
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == code and response.get_json()["error"]["message"]


@pytest.mark.parametrize("body", [None, {}, {"nodes": "+1", "extra": 1}, [1]])
def test_a_bad_scale_body_is_a_400_before_the_scheduler_is_asked(body):
    handle = Handle({"outcome": {}})
    client, _ = client_for(handle)
    response = (
        client.post("/api/v1/queues/cpu/scale", json=body)
        if body is not None
        else client.post("/api/v1/queues/cpu/scale", data="nodes=+1")
    )
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "validation_error"
    assert handle.calls == []


def test_the_openapi_document_with_the_autoscale_paths_is_valid():
    _, app = client_for(Handle())
    doc = build_openapi()
    for extend in app.extensions[OPENAPI_EXTENSIONS_KEY]:
        extend(doc)
    validate(doc)
    scale = doc["paths"]["/api/v1/queues/{queue}/scale"]["post"]
    assert set(scale["responses"]) == {"202", "400", "401", "403", "404", "503"}
    assert set(doc["paths"]["/api/v1/autoscale"]["get"]["responses"]) == {"200", "401", "403", "503"}
    add_autoscale_paths(doc)  # twice is harmless (a document built once per app)
    validate(doc)


def test_with_tokens_reading_needs_tasks_and_scaling_needs_admin():
    from lama_cleaner.config import TokenSettings
    from lama_cleaner.server.auth import install_auth

    config = Config()
    config.server.tokens = {
        "viewer": TokenSettings(token="v" * 20, scopes=["tasks"]),
        "ops": TokenSettings(token="o" * 20, scopes=["admin"]),
    }
    handle = Handle({"outcome": {}})
    client, app = client_for(handle)
    install_auth(app, config)
    viewer, ops = {"Authorization": "Bearer " + "v" * 20}, {"Authorization": "Bearer " + "o" * 20}

    anonymous = client.get("/api/v1/autoscale")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/v1/autoscale", headers=viewer).status_code == 200
    refused = client.post("/api/v1/queues/cpu/scale", json={"nodes": "+1"}, headers=viewer)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    assert client.post("/api/v1/queues/cpu/scale", json={"nodes": "+1"}, headers=ops).status_code == 202
    assert [name for name, _ in handle.calls] == [STATUS_CALL, SCALE_CALL]  # refused requests never reached it
