"""The product as an operator runs it: ``lama-cleaner --plugins distributed,autoscale`` (embedded
scheduler), and ``lama-cleaner scheduler --plugins autoscale`` with a web server using
``--scheduler tcp://...`` (standalone). In both, work submitted to ``/api/v1/tasks`` starts a local node,
runs exactly once, the idle node is drained and exits, and ``/api/v1/autoscale`` (reached through the
executor's scheduler handle) lists the decisions; ``/api/v1/openapi.json`` describes the routes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from tests.integration.distributed.conftest import free_port_block, mask_png, png, task_form
from tests.support.server_process import REPO_ROOT, ServerProcess, server_env
from tests.support.waiting import wait_for
from tests.unit.monitor.exposition import parse_exposition, value

pytestmark = pytest.mark.slow

PLUGINS = '["distributed", "autoscale", "tests.support.fake_models"]'
START_S = 90.0


def settings(tmp_path: Path, bind: str, plugins: str = PLUGINS) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        f"""
plugins = {plugins}

[distributed]
local_nodes = 0
scheduler_bind = "{bind}"
data_dir = "{tmp_path / "journal"}"
heartbeat_interval_s = 0.25
heartbeat_liveness = 4
routes = {{count = "cpu"}}

[autoscale]
interval_s = 0.5

[autoscale.queues.cpu]
max_nodes = 1
up_window_s = 0
down_window_s = 2
down_cooldown_s = 0

[autoscale.providers.local]
max_nodes = 1
device = "cpu"
stop_grace_s = 3
""",
        encoding="utf-8",
    )
    return path


def submit(url: str, marker: str) -> str:
    form = {**task_form(f"300 {marker}"), "model": "count"}
    files = {"image": ("i.png", png(), "image/png"), "mask": ("m.png", mask_png(), "image/png")}
    response = requests.post(f"{url}/api/v1/tasks", data=form, files=files, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def autoscale(url: str) -> dict:
    response = requests.get(f"{url}/api/v1/autoscale", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def burst_scales_out_and_back_in(url: str, count_file: Path) -> None:
    markers = [f"s{i}" for i in range(3)]
    ids = [submit(url, m) for m in markers]
    wait_for(lambda: all(requests.get(f"{url}/api/v1/tasks/{t}", timeout=10).json()["status"] == "completed"
                         for t in ids), START_S, "the burst ran on an autoscaled node")  # fmt: skip
    assert Counter(count_file.read_text().split()) == Counter(markers)
    wait_for(lambda: autoscale(url)["counters"]["instances_released"] == 1, 60, "the idle node drained and released")
    body = autoscale(url)
    assert [d["action"] for d in body["decisions"]] == ["scale_up", "scale_down"], body["decisions"]
    assert "no node serves the queue" in body["decisions"][0]["reason"] and body["decisions"][1]["drained"]
    wait_for(lambda: autoscale(url)["providers"]["local"]["state"]["running"] == [], 60, "the node process exited")
    doc = requests.get(f"{url}/api/v1/openapi.json", timeout=10).json()
    validate(doc)
    assert "/api/v1/autoscale" in doc["paths"] and "/api/v1/queues/{queue}/scale" in doc["paths"]


def test_embedded_scheduler(tmp_path):
    """With the monitor beside it, as an operator would run it: the decisions are exported too."""
    count_file = tmp_path / "runs.txt"
    config = settings(tmp_path, "tcp://127.0.0.1:0", PLUGINS.replace('"autoscale"', '"autoscale", "monitor"'))
    env = {"LAMA_TEST_COUNT_FILE": str(count_file)}
    with ServerProcess(["--config", str(config)], env=env) as server:
        burst_scales_out_and_back_in(server.url, count_file)
        samples = parse_exposition(requests.get(f"{server.url}/metrics", timeout=10).text)
        assert value(samples, "lama_cleaner_scale_decisions_total", action="scale_up", queue="cpu") == 1
        assert value(samples, "lama_cleaner_scale_decisions_total", action="scale_down", queue="cpu") == 1


def test_standalone_scheduler_reached_through_the_remote_handle(tmp_path):
    count_file = tmp_path / "runs.txt"
    bind = f"tcp://127.0.0.1:{free_port_block(3)}"
    config = settings(tmp_path, bind)
    env = server_env({"LAMA_TEST_COUNT_FILE": str(count_file)})
    log = open(tmp_path / "scheduler.log", "wb")  # noqa: SIM115 - closed below
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "lama_cleaner", "scheduler", "--config", str(config), "--device", "cpu"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        with ServerProcess(["--config", str(config), "--scheduler", bind], env={**env}) as server:
            wait_for(lambda: autoscale(server.url), 30, "the scheduler's autoscaler answers through the web server")
            burst_scales_out_and_back_in(server.url, count_file)
    finally:
        scheduler.terminate()
        try:
            scheduler.wait(20)
        except subprocess.TimeoutExpired:
            scheduler.kill()
            scheduler.wait(5)
        log.close()
        print((tmp_path / "scheduler.log").read_text(errors="replace")[-4000:])
