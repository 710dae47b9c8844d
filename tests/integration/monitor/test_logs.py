"""Real log output of a real process (``log_scenario``): JSON lines parsed, text lines read, files rotated.

The scenario logs through the standard library (our modules, Werkzeug with a handler of its own, an
arbitrary library, Python warnings) and through loguru, inside and outside a task context, and logs an
exception raised next to a local variable holding a secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lama_cleaner.plugins.monitor.logs import log_file_path
from tests.support.server_process import REPO_ROOT, server_env


def run_scenario(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.monitor.log_scenario", *args],
        cwd=REPO_ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # logs go to standard error only
    return proc.stderr


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line]
    return [json.loads(line) for line in lines]  # every line is one JSON object: nothing else is mixed in


def test_json_lines_carry_role_logger_and_task_context() -> None:
    records = json_lines(run_scenario("scheduler", "json"))
    by_message = {r["message"]: r for r in records}
    assert "not shown at INFO" not in by_message
    assert {r["role"] for r in records} == {"scheduler"}

    dispatched = by_message["task t-1 dispatched to node n1"]
    assert dispatched["level"] == "INFO"
    assert dispatched["logger"] == "lama_cleaner.plugins.distributed.scheduler"
    assert (dispatched["task_id"], dispatched["queue"], dispatched["node"], dispatched["attempt"]) == (
        "t-1",
        "gpu",
        "n1",
        1,
    )
    assert dispatched["function"] == "main" and isinstance(dispatched["line"], int) and dispatched["pid"] > 0

    # Inside task_context: loguru's own lines and standard-library lines alike; an explicit value wins.
    for message, node in (
        ("started on cuda:0", "n1"),
        ("retrying after a lost connection", "n1"),
        ("explicit wins", "n2"),
    ):
        line = by_message[message]
        assert (line["task_id"], line["queue"], line["node"], line["attempt"]) == ("t-1", "gpu", node, 2), line

    werkzeug = by_message['127.0.0.1 - - "POST /inpaint HTTP/1.1" 200 -']
    assert werkzeug["logger"] == "werkzeug" and "task_id" not in werkzeug
    assert by_message["literal {braces} and <red>markup</red> stay as they are"]["level"] == "ERROR"
    assert any(r["logger"] == "py.warnings" and "a deprecated call" in r["message"] for r in records)

    failed = by_message["task t-1 failed"]
    assert failed["task_id"] == "t-1" and failed["level"] == "ERROR"
    assert failed["exception"]["type"] == "ZeroDivisionError"
    assert "in fail_with_a_secret" in failed["exception"]["traceback"]
    # Messages keep their order; the werkzeug handler added before set-up did not print a second copy.
    assert [r["message"] for r in records].count('127.0.0.1 - - "POST /inpaint HTTP/1.1" 200 -') == 1


def test_json_lines_never_show_variable_values() -> None:
    assert "SECRET-TOKEN-123" not in run_scenario("scheduler", "json", "--diagnose")


def test_text_lines_are_readable_and_diagnose_stays_off_unless_asked() -> None:
    text = run_scenario("node", "text", "--instance", "n1")
    lines = text.splitlines()
    dispatched = next(line for line in lines if "dispatched to node" in line)
    assert dispatched.endswith("task t-1 dispatched to node n1 [task=t-1 queue=gpu node=n1 attempt=1]")
    assert " INFO    node lama_cleaner.plugins.distributed.scheduler: " in dispatched
    assert "\x1b[" not in text  # not a terminal: no colour codes
    assert "Traceback (most recent call last):" in text
    assert "SECRET-TOKEN-123" not in text
    assert "SECRET-TOKEN-123" in run_scenario("node", "text", "--diagnose")  # the check above can fail


def test_a_file_per_process_rotated_and_retained(tmp_path: Path) -> None:
    args = ["--dir", str(tmp_path), "--instance", "../gpu/n1", "--rotation", "4 KB", "--retention", "2"]
    stderr = run_scenario("node", "json", *args, "--lines", "300")
    current = log_file_path(str(tmp_path), "node", "../gpu/n1")
    assert current == tmp_path / "node-gpu_n1.log"  # the instance cannot leave the folder
    files = sorted(p.name for p in tmp_path.iterdir())
    rotated = [name for name in files if name != current.name]
    assert current.name in files
    assert len(rotated) == 2, files  # 300 lines of ~400 bytes rotated many times; retention kept 2
    assert all(name.startswith("node-gpu_n1.") and name.endswith(".log") for name in rotated)
    assert current.stat().st_size <= 4096 + 1024
    last_in_file = json_lines(current.read_text())[-1]
    assert last_in_file == json_lines(stderr)[-1]  # the same line in both sinks


@pytest.mark.parametrize(
    ("role", "instance", "name"), [("serve", None, "serve.log"), ("inference", "n-7", "inference-n-7.log")]
)
def test_file_names(role: str, instance: str | None, name: str) -> None:
    assert log_file_path("logs", role, instance).name == name
