"""A classic ``/inpaint`` whose task fails on every attempt: retried with backoff, then a clear error.

The ``fail`` test model raises on every run and appends its start time to ``LAMA_TEST_FAIL_FILE``, so
the test sees how many attempts really ran and how far apart they started. The traceback is checked
where the scheduler records it, in the SQLite journal, and over HTTP: ``GET /api/v1/tasks/{id}`` shows
it only when ``distributed.expose_tracebacks`` is on (the first test's server), never by default (the
second test's server), because the API is unauthenticated and a traceback leaks server paths.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests

from .conftest import FAST, DistServer, mask_png, merged, png, task_form, wait_nodes, write_config

pytestmark = pytest.mark.slow

BACKOFF_S = 0.5
CONFIG = merged(
    FAST,
    {"distributed": {"retry": {"inpaint": {"max_attempts": 2, "backoff_base_s": BACKOFF_S, "backoff_max_s": 5.0}}}},
)
EXPOSED = merged(CONFIG, {"distributed": {"expose_tracebacks": True}})


def _inpaint(url: str, prompt: str) -> requests.Response:
    return requests.post(
        f"{url}/inpaint",
        data=task_form(prompt),
        files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
        timeout=60,
    )


def _failed_task(url: str) -> dict:
    page = requests.get(f"{url}/api/v1/tasks", params={"status": "failed"}, timeout=10).json()
    assert page["total"] == 1, page
    return page["tasks"][0]


def _journal_row(data_dir: Path, task_id: str) -> sqlite3.Row:
    db = sqlite3.connect(data_dir / "journal.sqlite3", timeout=10)
    try:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    finally:
        db.close()
    assert row is not None, task_id
    return row


def _starts(fail_file: Path, marker: str) -> list[float]:
    lines = fail_file.read_text().split("\n") if fail_file.exists() else []
    return [float(line.split()[0]) for line in lines if line.endswith(f" {marker}")]


def _start_failing(tmp_path: Path, servers: list[DistServer], config: dict) -> tuple[DistServer, Path, Path]:
    """A distributed server with one local node whose current model is ``fail``."""
    fail_file = tmp_path / "fail.txt"
    data = tmp_path / "data"
    env = {"LAMA_TEST_FAIL_FILE": str(fail_file)}
    dist = DistServer(data, write_config(tmp_path, config), local_nodes=1, env=env)
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    assert requests.post(f"{dist.url}/model", data={"name": "fail"}, timeout=30).status_code == 200
    return dist, data, fail_file


@pytest.fixture
def failing(tmp_path: Path, servers: list[DistServer]) -> tuple[DistServer, Path, Path]:
    """The default configuration: tracebacks stay out of the HTTP API."""
    return _start_failing(tmp_path, servers, CONFIG)


@pytest.fixture
def failing_exposed(tmp_path: Path, servers: list[DistServer]) -> tuple[DistServer, Path, Path]:
    """The operator opted in to tracebacks over HTTP (``distributed.expose_tracebacks``)."""
    return _start_failing(tmp_path, servers, EXPOSED)


def test_retries_run_out_then_inpaint_answers_a_clear_error_and_the_failure_is_recorded(failing_exposed):
    dist, data, fail_file = failing_exposed
    response = _inpaint(dist.url, "boom")

    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "fake model failure boom" in response.text, response.text
    assert "2 attempts" in response.text, response.text
    assert "<" not in response.text  # no HTML page, no traceback wall

    task = _failed_task(dist.url)
    assert task["status"] == "failed" and task["name"] == "fail"
    assert task["attempts"] == 2 and task["max_attempts"] == 2
    assert "fake model failure boom" in task["error"]
    result = requests.get(f"{dist.url}/api/v1/tasks/{task['id']}/result", timeout=10)
    assert result.status_code == 409 and result.json()["error"]["code"] == "task_failed"
    assert "fake model failure boom" in result.json()["error"]["message"]

    # Exactly two runs, the second at least the configured backoff after the first.
    starts = _starts(fail_file, "boom")
    assert len(starts) == 2, starts
    assert starts[1] - starts[0] >= BACKOFF_S, f"retried {starts[1] - starts[0]:.3f} s after the first attempt"

    row = _journal_row(data, task["id"])
    assert row["status"] == "failed" and row["attempts"] == 2 and row["dispatches"] == 2
    assert row["traceback"] and "Traceback (most recent call last)" in row["traceback"]
    assert "RuntimeError: fake model failure boom" in row["traceback"]
    # Operators who opted in see it over HTTP too: on the task's own page, not in lists.
    detail = requests.get(f"{dist.url}/api/v1/tasks/{task['id']}", timeout=10).json()
    assert detail["traceback"] == row["traceback"]
    assert task["traceback"] is None


def test_a_non_retryable_failure_fails_at_once_with_a_4xx(failing):
    dist, data, fail_file = failing
    # A value out of range is refused by the web server itself: never queued, never run, never retried.
    refused = requests.post(
        f"{dist.url}/inpaint",
        data={**task_form("range"), "hdStrategy": "Resize", "hdStrategyResizeLimit": "0"},
        files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
        timeout=60,
    )
    assert refused.status_code == 400 and "hdStrategyResizeLimit" in refused.text, refused.text
    assert requests.get(f"{dist.url}/api/v1/tasks", timeout=10).json()["total"] == 0

    response = _inpaint(dist.url, "final=1 bad")

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "fake client error bad" in response.text
    task = _failed_task(dist.url)
    assert task["attempts"] == 1 and "fake client error bad" in task["error"]
    assert len(_starts(fail_file, "bad")) == 1  # never retried
    assert "ClientError: fake client error bad" in _journal_row(data, task["id"])["traceback"]
    # Recorded, but by default not shown to the unauthenticated API.
    detail = requests.get(f"{dist.url}/api/v1/tasks/{task['id']}", timeout=10).json()
    assert detail["status"] == "failed" and detail["error"] == task["error"]
    assert "traceback" in detail and detail["traceback"] is None, detail
