"""Schemathesis over the in-process blueprint (stub TaskService): fast, deterministic, every operation.

Generated requests (valid and invalid) must never produce a 5xx, and every response must match the
OpenAPI document: status code documented, content type and body schema. The integration suite runs
the same against a real server with the distributed executor.
"""

from __future__ import annotations

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings

from lama_cleaner.config import Config
from lama_cleaner.server.api_v1 import register_api

from .stub_service import StubTaskService

MAX_EXAMPLES = 25


def _app() -> Flask:
    app = Flask(__name__)
    register_api(app, StubTaskService(), Config(model="cv2", device="cpu"))
    return app


APP = _app()
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", APP)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case):
    case.call_and_validate(checks=CHECKS)
