"""A server with the autoscale plugin honours the OpenAPI document it serves, the plugin's operations included.

Schemathesis generates requests for every operation of the document (the task API's and the two the
plugin adds; bounded, derandomized) against a real ``--plugins distributed,autoscale`` server and checks
each answer: no 5xx, a documented status and content type, a body matching its schema. The queue's
``max_nodes`` is 0, so a generated ``+N`` is a decision that starts nothing (every answer is still the
real one).
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.slow

OPERATIONS = ("getAutoscale", "scaleQueue")
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def autoscale_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("autoscale-openapi")
    config = tmp / "settings.toml"
    config.write_text(
        f"""
plugins = ["distributed", "autoscale"]

[distributed]
local_nodes = 0
scheduler_bind = "tcp://127.0.0.1:0"
data_dir = "{tmp / "journal"}"

[autoscale.queues.cpu]
max_nodes = 0
""",
        encoding="utf-8",
    )
    with ServerProcess(["--config", str(config)]) as server:
        yield server


@pytest.fixture(scope="module")
def autoscale_schema(autoscale_server):
    return schemathesis.openapi.from_url(autoscale_server.url + "/api/v1/openapi.json")


lazy_schema = schemathesis.pytest.from_fixture("autoscale_schema")


def test_the_document_lists_the_autoscale_operations(autoscale_server):
    doc = requests.get(autoscale_server.url + "/api/v1/openapi.json", timeout=10).json()
    found = {op["operationId"] for path in doc["paths"].values() for op in path.values() if isinstance(op, dict)}
    assert set(OPERATIONS) <= found


@lazy_schema.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_autoscale_routes_conform_to_the_document(case, autoscale_server):
    case.call_and_validate(base_url=autoscale_server.url, checks=CHECKS)
