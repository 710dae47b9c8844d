"""``local`` end to end through the plugin: a burst starts real node processes, the backlog drains with
every task run exactly once, idle nodes are drained and exit, every decision is listed by
``GET /api/v1/autoscale``, and an operator scales by HTTP and with ``lama-cleaner scale``.

Real parts: the scheduler thread with its journal, firing the distributed hooks into a plugin manager
with the autoscale plugin (``scheduler_started``, ``node_event``, ``scheduler_call`` through its
``LocalSchedulerHandle``), node subprocesses started by the ``local`` provider, APScheduler's job, the
Flask routes behind a real HTTP server, and the CLI in a subprocess. Here the test holds the pieces, to
read the provider and change the policy between phases; ``test_serve_end_to_end.py`` runs the whole
server instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from types import SimpleNamespace

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from lama_cleaner.plugins.autoscale import plugin
from lama_cleaner.plugins.autoscale.config import QueuePolicy
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
from lama_cleaner.plugins.distributed.wire import protocol as p
from lama_cleaner.plugins.manager import create_plugin_manager
from tests.integration.autoscale.conftest import fast_config, scheduler_class
from tests.integration.distributed.conftest import mask_png, png, task_form
from tests.support.server_process import REPO_ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

PLUGINS = ["distributed", "autoscale", "tests.support.fake_models"]
START_S = 90.0  # node processes import torch/opencv on a shared 2-core box
TASKS = 8


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    """Scheduler + autoscaler (started by the plugin's hook) + the HTTP routes on a real server."""
    count_file = tmp_path / "runs.txt"
    monkeypatch.setenv("LAMA_TEST_COUNT_FILE", str(count_file))  # nodes inherit it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    config = fast_config(tmp_path)
    config.plugins = list(PLUGINS)
    config.autoscale.interval_s = 0.5
    config.autoscale.register_timeout_s = 180.0
    config.autoscale.queues = {
        "cpu": QueuePolicy(min_nodes=0, max_nodes=2, providers=["local"], queued_per_node=2, max_wait_s=0,
                           up_window_s=0, up_cooldown_s=1, down_window_s=2, down_cooldown_s=1, max_step_down=2)
    }  # fmt: skip
    config.autoscale.providers = {"local": {"max_nodes": 2, "device": "cpu", "stop_grace_s": 3}}
    pm = create_plugin_manager(PLUGINS)
    sched = scheduler_class()(config, lambda kind, name: "cpu", plugin_manager=pm)
    sched.start()  # fires scheduler_started: the plugin starts the autoscaler
    handle = sched.handle
    app = Flask("autoscale-e2e")
    plugin.register_routes(app, SimpleNamespace(scheduler_handle=handle))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = SchedulerClient(sched.control_endpoint, config)
    url = f"http://127.0.0.1:{server.server_port}"
    runtime = plugin._registry().first()
    try:
        yield SimpleNamespace(url=url, client=client, runtime=runtime, count_file=count_file, sched=sched, pm=pm)
    finally:
        provider = runtime.autoscaler.providers["local"]
        pids = [r["pid"] for r in provider.state()["running"]]
        pm.hook.shutdown(config=config, role="serve")  # drain first, then stop what is left
        client.close()
        server.shutdown()
        sched.stop()
        sched.join(10)
        assert all(not _alive(pid) for pid in pids), "a local node outlived the autoscaler"


def submit(client: SchedulerClient, marker: str, ms: int) -> str:
    header = {
        "task": {"kind": "inpaint", "name": "count", "form": task_form(f"{ms} {marker}"), "submitter": None,
                 "idempotency_key": None},
        "blobs": ["image", "mask"],
    }  # fmt: skip
    return client.request(p.SUBMIT, header, [png(), mask_png()]).header["task"]["id"]


def status(url: str) -> dict:
    response = requests.get(f"{url}/api/v1/autoscale", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def running_nodes(d) -> list[dict]:
    return status(d.url)["providers"]["local"]["state"]["running"]


def test_burst_scales_out_drains_and_scales_in_with_every_task_run_once(deployment):
    d = deployment
    assert status(d.url)["queues"]["cpu"]["nodes"] == 0
    markers = [f"t{i}" for i in range(TASKS)]
    for marker in markers:
        submit(d.client, marker, 400)

    ups = wait_for(lambda: [x for x in status(d.url)["decisions"] if x["action"] == "scale_up"], 30, "a scale-up")
    assert ups[0]["source"] == "policy" and "queued" in ups[0]["reason"] and ups[0]["started"].get("local")
    wait_for(lambda: len(running_nodes(d)) == 2, 30, "two local nodes (max_nodes)")

    def all_ran() -> bool:
        return d.count_file.exists() and len(d.count_file.read_text().split()) >= TASKS

    wait_for(all_ran, START_S + 60, "the backlog drained")
    runs = Counter(d.count_file.read_text().split())
    assert runs == Counter(markers), runs  # none lost, none run twice

    wait_for(lambda: running_nodes(d) == [], 60, "idle nodes drained and exited")
    wait_for(lambda: status(d.url)["counters"]["instances_released"] == 2, 10, "both instances released")
    body = status(d.url)
    downs = [x for x in body["decisions"] if x["action"] == "scale_down"]
    assert downs and all(x["drained"] for x in downs) and "idle" in downs[0]["reason"]
    exited = body["providers"]["local"]["state"]["exited"]
    assert len(exited) == 2 and all(e["code"] == 0 for e in exited), exited
    assert body["counters"]["abnormal_instances"] == 0 and not body["instances"]["live"]
    assert all(t["end"] in ("released", "left") for t in body["instances"]["ended"]), body["instances"]


def test_an_operator_scales_by_http_and_with_the_cli(deployment):
    d = deployment
    d.runtime.autoscaler.config.queues["cpu"].down_window_s = 3600  # the policy keeps idle nodes here

    response = requests.post(f"{d.url}/api/v1/queues/cpu/scale", json={"nodes": "+1"}, timeout=10)
    assert response.status_code == 202, response.text
    outcome = response.json()["outcome"]
    assert outcome["source"] == "manual" and outcome["started"] == {"local": 1}, outcome
    wait_for(lambda: status(d.url)["queues"]["cpu"]["nodes"] == 1 and status(d.url)["queues"]["cpu"]["pending"] == 0,
             START_S, "the new node registered")  # fmt: skip

    cli = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "scale", "cpu", "-1", "--server", d.url],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "scale_down" in cli.stdout and "draining" in cli.stdout, cli.stdout
    wait_for(lambda: running_nodes(d) == [], 60, "the drained node exited")
    assert [x["source"] for x in status(d.url)["decisions"]] == ["manual", "manual"]

    refused = requests.post(f"{d.url}/api/v1/queues/gpu/scale", json={"nodes": "+1"}, timeout=10)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_queue"
    assert "not autoscaled" in refused.json()["error"]["message"]
    bad = requests.post(f"{d.url}/api/v1/queues/cpu/scale", json={"nodes": "twice"}, timeout=10)
    assert bad.status_code == 400 and "expected =N, +N or -N" in bad.json()["error"]["message"]
    cli_bad = subprocess.run([sys.executable, "-m", "lama_cleaner", "scale", "gpu", "+1", "--server", d.url],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cli_bad.returncode == 1 and "404" in cli_bad.stderr and "not autoscaled" in cli_bad.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_node_killed_mid_task_is_counted_abnormal_and_its_task_runs_once_elsewhere(deployment):
    d = deployment
    d.runtime.autoscaler.config.queues["cpu"].max_nodes = 1
    task = submit(d.client, "survivor", 4000)
    [node] = wait_for(lambda: running_nodes(d), START_S, "a node started for the task")
    wait_for(lambda: d.client.request(p.GET, {"task_id": task}).header["task"]["status"] == "processing",
             START_S, "the task runs")  # fmt: skip
    os.kill(node["pid"], signal.SIGKILL)  # no goodbye, no hand-back

    def vanished() -> dict | None:
        ended = status(d.url)["instances"]["ended"]
        return next((t for t in ended if t["instance_id"] == node["instance"] and t["end"] == "vanished"), None)

    wait_for(vanished, 30, "the instance counted as vanished")
    body = status(d.url)
    assert body["counters"]["abnormal_instances"] == 1
    assert body["providers"]["local"]["health"]["errors"] >= 1
    assert any(e["kind"] == "error" and node["instance"] in e["reason"] for e in body["events"])
    wait_for(lambda: d.client.request(p.GET, {"task_id": task}).header["task"]["status"] == "completed",
             START_S + 30, "the re-queued task ran on a new node")  # fmt: skip
    assert Counter(d.count_file.read_text().split()) == Counter({"survivor": 1})
