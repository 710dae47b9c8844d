"""HTTP behaviour of a distributed server that must match the classic one or be reachable from outside:
extra multipart parts, switching to a model the web host cannot run itself, draining nodes. Real
server and node subprocesses, real HTTP, real ZeroMQ over loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.support.server_process import REPO_ROOT, ServerProcess

from .conftest import (
    FAST,
    DistServer,
    Proc,
    api_nodes,
    api_submit,
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

pytestmark = pytest.mark.slow


def _inpaint_with_extra_parts(url: str) -> requests.Response:
    files = [
        ("image", ("i.png", png(64, 40, seed=3))),
        ("mask", ("m.png", mask_png(64, 40))),
        ("", ("nameless.png", b"not read by anyone")),  # a part with an empty field name
        ("thumbnail", ("t.png", png(8, 8))),  # a part /inpaint does not know
    ]
    return requests.post(f"{url}/inpaint", data=task_form(), files=files, timeout=60)


def test_extra_multipart_parts_are_ignored_in_both_modes(tmp_path: Path, servers: list[DistServer]):
    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    servers.append(dist.start())
    with ServerProcess() as classic:
        expected = _inpaint_with_extra_parts(classic.url)
    wait_nodes(dist.url, 1)
    got = _inpaint_with_extra_parts(dist.url)
    assert expected.status_code == 200, expected.text
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"] == expected.headers["Content-Type"]
    assert got.content == expected.content


def _torchless_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with a ``torch`` package whose import fails: a web host without PyTorch."""
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("torch is hidden for this test")\n')
    return {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO_ROOT)])}


def test_torchless_front_end_may_switch_to_lama_for_its_nodes(tmp_path: Path, servers: list[DistServer]):
    env = _torchless_env(tmp_path)
    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=0, env=env)
    servers.append(dist.start())
    switched = requests.post(f"{dist.url}/model", data={"name": "lama"}, timeout=30)
    assert switched.status_code == 200 and switched.text == "ok, switch to lama"
    assert requests.get(f"{dist.url}/model", timeout=30).text == "lama"
    # A model this build cannot run anywhere is still refused, with its reason.
    refused = requests.post(f"{dist.url}/model", data={"name": "sd1.5"}, timeout=30)
    assert refused.status_code == 403 and "not supported" in refused.text
    assert requests.get(f"{dist.url}/model", timeout=30).text == "lama"
    # Without the distributed plugin the same host runs models itself, so lama stays refused there.
    with ServerProcess(env=env) as classic:
        local = requests.post(f"{classic.url}/model", data={"name": "lama"}, timeout=30)
    assert local.status_code == 403 and "PyTorch" in local.text


def _drain(url: str, node_id: str) -> requests.Response:
    return requests.post(f"{url}/api/v1/nodes/{node_id}/drain", timeout=30)


def _node_named(url: str, name: str) -> dict:
    return wait_for(lambda: next((n for n in api_nodes(url) if n["name"] == name), None), 60, f"node {name}")


def test_drain_idle_node_started_with_exit_on_drain(tmp_path: Path, servers: list[DistServer], procs: list[Proc]):
    config = write_config(tmp_path, FAST)
    dist = DistServer(tmp_path / "data", config, local_nodes=0)
    servers.append(dist.start())
    node = start_node(procs, dist.scheduler, config, "--name", "leaving", "--exit-on-drain")
    wait_nodes(dist.url, 1)
    node_id = _node_named(dist.url, "leaving")["id"]
    unknown = _drain(dist.url, "no-such-node")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    r = _drain(dist.url, node_id)
    assert r.status_code == 202, r.text
    assert r.json()["id"] == node_id and r.json()["state"] == "draining"
    wait_for(lambda: not node.alive(), 30, "the drained node to exit")
    assert node.proc.returncode == 0
    wait_for(lambda: _node_named(dist.url, "leaving")["state"] == "offline", 30, "the node to be offline")
    gone = _drain(dist.url, node_id)
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "node_offline"


def test_drain_busy_node_finishes_its_task_and_the_next_goes_elsewhere(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    config = write_config(tmp_path, merged(FAST, {"distributed": {"unschedulable_timeout_s": 0}}))
    dist = DistServer(tmp_path / "data", config, local_nodes=0)
    servers.append(dist.start())
    start_node(procs, dist.scheduler, config, "--name", "one")
    start_node(procs, dist.scheduler, config, "--name", "two")
    ids = {_node_named(dist.url, name)["id"] for name in ("one", "two")}
    wait_nodes(dist.url, 2)
    running = api_submit(dist.url, "sleep", "3000")
    busy_id = wait_status(dist.url, running["id"], ["processing"])["node"]
    (other_id,) = ids - {busy_id}
    r = _drain(dist.url, busy_id)
    assert r.status_code == 202 and r.json()["state"] == "draining" and r.json()["current_task"] == running["id"]
    following = api_submit(dist.url, "sleep", "0")
    assert wait_status(dist.url, following["id"], ["completed", "failed"])["node"] == other_id
    done = wait_status(dist.url, running["id"], ["completed", "failed"])
    assert done["status"] == "completed" and done["node"] == busy_id
    later = api_submit(dist.url, "sleep", "0")
    assert wait_status(dist.url, later["id"], ["completed", "failed"])["node"] == other_id
    drained = next(n for n in api_nodes(dist.url) if n["id"] == busy_id)
    assert drained["state"] == "draining" and drained["current_task"] is None
