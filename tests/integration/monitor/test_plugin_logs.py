"""With ``--log-json``, one task's path is found by its id in the JSON lines of the web server, the standalone
scheduler and the node that ran it: three processes, one format, one field to search. A task that raises on
its node shows the node's traceback in the scheduler's log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.distributed.conftest import api_submit, wait_nodes, wait_status

from .deployment import Deployment

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, standalone=True, log_json=True)
    try:
        yield dep
    finally:
        dep.stop()
        print(dep.outputs())  # shown by pytest when the test failed


def json_records(output: str) -> list[dict[str, Any]]:
    """Every JSON line of a process's output (the web server also prints its start-up banner as text)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def about(records: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("task_id") == task_id]


def test_one_task_is_found_by_its_id_in_every_process(deployment: Deployment) -> None:
    dep = deployment.start()
    dep.node("node-a")
    wait_nodes(dep.url, 1, 180)
    task_id = api_submit(dep.url, "sleep", "50")["id"]
    assert wait_status(dep.url, task_id, ["completed", "failed"], 30)["status"] == "completed"
    failing = api_submit(dep.url, "fail", "boom final=1")["id"]  # raises on the node, not retried
    assert wait_status(dep.url, failing, ["completed", "failed"], 30)["status"] == "failed"
    dep.stop()  # every process flushes its log on the way out

    assert dep.scheduler is not None and dep.web is not None
    outputs = {
        "serve": dep.web.output(),
        "scheduler": dep.scheduler.output(),
        "node": dep.nodes["node-a"].output(),
    }
    for role, output in outputs.items():
        records = json_records(output)
        assert records, f"no JSON lines from the {role} process"
        assert {r["role"] for r in records} >= {role}, role
        lines = about(records, task_id)
        assert lines, f"the {role} process logged nothing about task {task_id}"
        assert all(r["queue"] == "cpu" for r in lines if "queue" in r), role

    scheduler_path = [r["message"] for r in about(json_records(outputs["scheduler"]), task_id)]
    assert any(m.startswith("task accepted") for m in scheduler_path), scheduler_path
    assert any(m.startswith("task completed on node") for m in scheduler_path), scheduler_path
    # The exception raised on the node reaches the scheduler's log with the node's traceback.
    failure = [r for r in about(json_records(outputs["scheduler"]), failing) if r["level"] == "WARNING"]
    assert any("Traceback (most recent call last)" in r["message"] and "boom" in r["message"] for r in failure)
    node_lines = about(json_records(outputs["node"]), task_id)
    assert {r["attempt"] for r in node_lines} == {1}
    assert any("completed in" in r["message"] for r in node_lines)
