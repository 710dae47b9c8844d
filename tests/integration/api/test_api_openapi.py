"""The served OpenAPI document is valid, and a real server (distributed executor) honours it.

Schemathesis generates requests for every operation from the document (bounded, derandomized) and
checks each answer: never a 5xx, documented status code, documented content type, body matching its
schema.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

MAX_EXAMPLES = 15
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_openapi_document_is_valid_and_docs_page_is_offline(api_server):
    doc = requests.get(api_server.url + "/api/v1/openapi.json", timeout=10).json()
    validate(doc)
    assert doc["openapi"].startswith("3.")
    page = requests.get(api_server.url + "/api/v1/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script src" not in page.text and "https://" not in page.text and "submitTask" in page.text


@pytest.fixture(scope="module")
def api_schema(api_server):
    return schemathesis.openapi.from_url(api_server.url + "/api/v1/openapi.json")


lazy_schema = schemathesis.pytest.from_fixture("api_schema")


@lazy_schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_real_server_conforms_to_its_openapi_document(case, api_server):
    case.call_and_validate(base_url=api_server.url, checks=CHECKS)
