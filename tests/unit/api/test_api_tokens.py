"""API tokens on ``/api/v1``: scopes, task ownership, the refusal shapes, and ``require_scope`` for a
plugin's own route (docs/security.md#api-tokens). A bare Flask app over the stub service."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from lama_cleaner.config import Config, ConfigError, TokenSettings, validate_server
from lama_cleaner.server.api_v1 import register_api
from lama_cleaner.server.auth import METRICS, install_auth, is_loopback, require_scope, warn_if_exposed
from lama_cleaner.server.errors import install_error_handlers

from .stub_service import StubTaskService

ALICE = "alice-secret-0123456789"
BOB = "bob-secret-0123456789ab"
ROOT = "root-secret-0123456789ab"
WATCHER = "watch-secret-0123456789"


def _config(tmp_path=None) -> Config:
    config = Config(model="cv2", device="cpu")
    config.server.tokens = {
        "alice": TokenSettings(token=ALICE, scopes=["tasks"]),
        "bob": TokenSettings(token=BOB, scopes=["tasks"]),
        "root": TokenSettings(token=ROOT, scopes=["admin"]),
        "watcher": TokenSettings(token=WATCHER, scopes=["metrics"]),
    }
    return config


@pytest.fixture
def secured(service: StubTaskService):
    app = Flask(__name__)
    config = _config()
    install_error_handlers(app)
    install_auth(app, config)
    register_api(app, service, config)

    @app.get("/plugin-metrics")
    @require_scope(METRICS)
    def plugin_metrics():
        return "metric 1\n"

    return app.test_client()


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _submit(client, image_files, secret: str, key: str | None = None) -> str:
    headers = _auth(secret) | ({"Idempotency-Key": key} if key else {})
    response = client.post("/api/v1/tasks", data=image_files(), headers=headers, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def test_no_token_is_a_json_401_with_www_authenticate(secured, image_files):
    response = secured.post("/api/v1/tasks", data=image_files(), content_type="multipart/form-data")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert secured.get("/api/v1/tasks", headers=_auth("nope-" + ALICE)).status_code == 401
    assert secured.get("/api/v1/tasks", headers={"Authorization": ALICE}).status_code == 401  # no scheme


def test_a_tasks_token_sees_and_cancels_only_its_own_tasks(secured, image_files):
    mine = _submit(secured, image_files, ALICE)
    theirs = _submit(secured, image_files, BOB)
    listed = secured.get("/api/v1/tasks", headers=_auth(ALICE)).get_json()
    assert [t["id"] for t in listed["tasks"]] == [mine] and listed["total"] == 1
    assert "owner" not in listed["tasks"][0], "the owner is checked, not shown"
    for method, path in [("get", ""), ("delete", ""), ("get", "/result")]:
        response = getattr(secured, method)(f"/api/v1/tasks/{theirs}{path}", headers=_auth(ALICE))
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "not_found"
    assert secured.get(f"/api/v1/tasks/{theirs}", headers=_auth(BOB)).get_json()["status"] == "queued"
    assert secured.delete(f"/api/v1/tasks/{mine}", headers=_auth(ALICE)).get_json()["status"] == "cancelled"


def test_an_admin_token_sees_every_task_and_may_drain(secured, image_files):
    ids = {_submit(secured, image_files, ALICE), _submit(secured, image_files, BOB)}
    listed = secured.get("/api/v1/tasks", headers=_auth(ROOT)).get_json()
    assert {t["id"] for t in listed["tasks"]} == ids
    assert secured.delete(f"/api/v1/tasks/{min(ids)}", headers=_auth(ROOT)).status_code == 200
    drained = secured.post("/api/v1/nodes/n1/drain", headers=_auth(ALICE))
    assert drained.status_code == 403 and drained.get_json()["error"]["code"] == "forbidden"
    assert secured.post("/api/v1/nodes/n1/drain", headers=_auth(ROOT)).status_code != 403


def test_idempotency_keys_are_per_token(secured, image_files):
    first = _submit(secured, image_files, ALICE, key="k1")
    assert _submit(secured, image_files, ALICE, key="k1") == first
    assert _submit(secured, image_files, BOB, key="k1") != first, "bob must not get alice's task back"


def test_scopes_guard_plugin_routes_and_health_stays_open(secured):
    assert secured.get("/plugin-metrics").status_code == 401
    refused = secured.get("/plugin-metrics", headers=_auth(ALICE))
    assert refused.status_code == 403 and refused.mimetype == "text/plain"  # the app's shape outside /api/v1
    assert secured.get("/plugin-metrics", headers=_auth(WATCHER)).get_data(as_text=True) == "metric 1\n"
    assert secured.get("/plugin-metrics", headers=_auth(ROOT)).status_code == 200, "admin implies metrics"
    assert secured.get("/api/v1/tasks", headers=_auth(WATCHER)).status_code == 403
    assert secured.get("/api/v1/health").status_code == 200


def test_without_tokens_everything_stays_open(client, image_files):
    response = client.post("/api/v1/tasks", data=image_files(), content_type="multipart/form-data")
    assert response.status_code == 202
    assert client.get("/api/v1/tasks").get_json()["total"] == 1


@pytest.mark.parametrize(
    ("name", "token", "message"),
    [
        ("a b", TokenSettings(token=ALICE), "letters, digits"),
        ("x", TokenSettings(token="short"), "at least 16"),
        ("x", TokenSettings(token=ALICE, token_file="/f"), "exactly one"),
        ("x", TokenSettings(), "exactly one"),
        ("x", TokenSettings(token=ALICE, scopes=["root"]), "scopes"),
        ("x", TokenSettings(token=ALICE, scopes=[]), "scopes"),
    ],
)
def test_bad_token_settings_are_refused(name, token, message):
    config = Config()
    config.server.tokens = {name: token}
    with pytest.raises(ConfigError, match=message):
        validate_server(config.server)


def test_token_file_is_read_and_a_missing_one_refused(tmp_path):
    secret_file = tmp_path / "alice.token"
    secret_file.write_text(ALICE + "\n")
    config = Config()
    config.server.tokens = {"alice": TokenSettings(token_file=str(secret_file))}
    app = Flask(__name__)
    assert install_auth(app, config).lookup(ALICE).name == "alice"
    config.server.tokens = {"alice": TokenSettings(token_file=str(tmp_path / "missing"))}
    with pytest.raises(ConfigError, match="cannot read"):
        install_auth(Flask(__name__), config)


def test_one_warning_line_when_exposed_without_tokens(caplog):
    with caplog.at_level(logging.WARNING, logger="lama_cleaner.server.auth"):
        assert warn_if_exposed(Config(host="0.0.0.0"), install_auth(Flask(__name__), Config())) is True
        assert warn_if_exposed(Config(host="127.0.0.1"), install_auth(Flask(__name__), Config())) is False
        assert warn_if_exposed(Config(host="0.0.0.0"), install_auth(Flask(__name__), _config())) is False
    warnings = [r for r in caplog.records if "without API tokens" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


def test_the_python_client_sends_its_token(secured, monkeypatch):
    from lama_cleaner.client import TOKEN_ENV, LamaCleanerClient

    monkeypatch.setenv(TOKEN_ENV, ALICE)
    assert LamaCleanerClient().session.headers["Authorization"] == f"Bearer {ALICE}"
    assert LamaCleanerClient(token=ROOT).session.headers["Authorization"] == f"Bearer {ROOT}"
    monkeypatch.delenv(TOKEN_ENV)
    assert "Authorization" not in LamaCleanerClient().session.headers
