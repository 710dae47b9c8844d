"""Real processes with CURVE keys: a standalone ``lama-cleaner scheduler``, ``lama-cleaner node``s
and a remote producer (``SchedulerClient``), and a web server whose embedded scheduler listens on
every interface with its local node. Keys come from the real ``keys generate`` code; see
docs/security.md for the deployment these tests follow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.curve_keys import KeyRing

from .conftest import (
    FAST,
    DistServer,
    Proc,
    api_submit,
    free_port_block,
    mask_png,
    merged,
    png,
    start_node,
    task_form,
    wait_for,
    wait_nodes,
    wait_status,
    write_config,
)


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def client_config(ring: KeyRing, name: str) -> Config:
    config = Config()
    for key, value in {**FAST["distributed"], **ring.client_settings(name)}.items():
        if key != "retry":
            setattr(config.distributed, key, value)
    return config


def test_keys_command_is_registered_and_writes_a_private_secret(tmp_path: Path):
    from tests.support.server_process import REPO_ROOT, server_env

    done = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "keys", "generate", "gpu-1", "--dir", str(tmp_path)],
        cwd=REPO_ROOT, env=server_env(None), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "gpu-1.key_secret").stat().st_mode & 0o777 == 0o600
    shown = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "keys", "show", str(tmp_path / "gpu-1.key")],
        cwd=REPO_ROOT, env=server_env(None), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0 and len(shown.stdout.strip()) == 40 and shown.stdout.strip() in done.stdout


@pytest.mark.slow
def test_a_keyed_node_serves_a_remote_producer_and_an_unlisted_one_never_joins(tmp_path: Path, procs: list[Proc]):
    ring = KeyRing(tmp_path, ("gpu-1", "web-1", "rogue"))
    ring.allow("gpu-1")
    ring.allow("web-1")
    port = free_port_block(3)
    endpoint = f"tcp://127.0.0.1:{port}"
    sched_config = write_config(tmp_path, merged(FAST, {"distributed": ring.scheduler_settings()}), "sched.json")
    scheduler = Proc(["scheduler", "--bind", endpoint, "--data-dir", str(tmp_path / "data"),
                      "--config", str(sched_config), "--plugins", "tests.support.fake_models"])  # fmt: skip
    procs.append(scheduler)
    wait_for(lambda: "scheduler ready" in scheduler.output(), 60, "the scheduler to start")
    started = {}
    for name in ("gpu-1", "rogue"):
        config = write_config(tmp_path, merged(FAST, {"distributed": ring.client_settings(name)}), f"{name}.json")
        started[name] = start_node(procs, endpoint, config, "--name", name)

    client = SchedulerClient(endpoint, client_config(ring, "web-1"), request_timeout_s=30)
    try:
        nodes = wait_for(
            lambda: [n for n in client.request(p.NODES, {}).header["nodes"] if n["state"] == "idle"], 60, "a node"
        )
        image = png(seed=7)
        header = {"task": {"kind": "inpaint", "name": "sleep", "form": task_form("10")}, "blobs": ["image", "mask"]}
        task = client.request(p.SUBMIT, header, [image, mask_png()]).header["task"]
        wait_for(lambda: client.request(p.GET, {"task_id": task["id"]}).header["task"]["status"] == "completed",
                 60, "the task to complete")  # fmt: skip
        output = client.request(p.FETCH, {"task_id": task["id"]})
        assert np.array_equal(decoded(output.blobs[0]), decoded(image))  # the fake model returns its input
        wait_for(lambda: "refused a peer with unknown CURVE key" in scheduler.output(), 30, "the rogue's refusal")
        hint = f"no WELCOME: is this node's public key {ring.public('rogue')} in the scheduler's curve_authorized_keys"
        wait_for(lambda: hint in started["rogue"].output(), 30, "the rogue node to say why it is not welcomed")
        assert (
            [n["name"] for n in client.request(p.NODES, {}).header["nodes"]] == ["gpu-1"] == [n["name"] for n in nodes]
        )
    finally:
        client.close()


@pytest.mark.slow
def test_a_web_server_listening_everywhere_with_keys_runs_tasks_on_its_local_node(tmp_path: Path, servers):
    ring = KeyRing(tmp_path)
    config = write_config(tmp_path, merged(FAST, {"distributed": ring.scheduler_settings()}))
    dist = DistServer(tmp_path / "data", config, local_nodes=1, bind_host="0.0.0.0")
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    task = api_submit(dist.url, "sleep", "10")
    assert wait_status(dist.url, task["id"], ("completed", "failed"), 60)["status"] == "completed"


def test_a_web_server_embedding_a_public_scheduler_without_keys_refuses_in_one_line(tmp_path: Path):
    from tests.support.server_process import REPO_ROOT, free_port, server_env

    done = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "--plugins", "distributed", "--scheduler-bind", "tcp://0.0.0.0:0",
         "--data-dir", str(tmp_path / "data"), "--model", "cv2", "--device", "cpu", "--port", str(free_port())],
        cwd=REPO_ROOT, env=server_env(None), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line]
    assert len(errors) == 1 and "refusing to listen on tcp://0.0.0.0:0 without CURVE keys" in errors[0], errors
    assert "lama-cleaner keys generate scheduler" in errors[0]
