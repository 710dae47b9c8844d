"""A third-party node plugin, installed as a real package: its model and label reach the scheduler
through the nodes that have it, and the scheduler routes that model's tasks only to those nodes.

Real processes throughout: a standalone scheduler, a web server using it, and two nodes, one started
with the example package on its ``PYTHONPATH`` (found through its entry point, no ``--plugins``) and one
without. Both nodes take ``cpu`` work, so only routing by model keeps the plain node from getting the
plugin's tasks while it sits idle.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.example_package import install_example_plugin
from tests.support.server_process import REPO_ROOT
from tests.support.waiting import wait_for

from .conftest import (
    FAKE_PLUGIN,
    DistServer,
    Proc,
    api_submit,
    api_task,
    free_port_block,
    start_node,
    wait_nodes,
    wait_status,
)

MODEL = "example-invert"
LABEL = ("example-plugin", "invert")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    return install_example_plugin(tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-src"))


def test_only_nodes_with_the_plugin_advertise_its_model_and_label_and_get_its_tasks(
    tmp_path: Path, plugin_site: Path, procs: list[Proc], servers: list[DistServer], tmp_config: Path
):
    with_plugin = {"PYTHONPATH": f"{REPO_ROOT}:{plugin_site}"}
    endpoint = f"tcp://127.0.0.1:{free_port_block()}"
    scheduler = Proc(["scheduler", "--bind", endpoint, "--data-dir", str(tmp_path / "data"),
                      "--config", str(tmp_config), "--plugins", FAKE_PLUGIN], env=with_plugin)  # fmt: skip
    procs.append(scheduler)
    wait_for(lambda: "scheduler ready" in scheduler.output(), 60, "the scheduler to listen")
    web = DistServer(tmp_path / "unused", tmp_config, local_nodes=0, external_scheduler=endpoint, env=with_plugin)
    servers.append(web.start())
    start_node(procs, endpoint, tmp_config, "--name", "with-plugin", "--labels", "zone=lab", env=with_plugin)
    [plugged_node] = wait_nodes(web.url, 1)
    # Keep the plugin's node busy (a long task that stops at a step when cancelled), then add the plain one.
    long_task = api_submit(web.url, "steps", "steps=600 ms=100")
    assert wait_status(web.url, long_task["id"], ["processing"], 60)["node"] == plugged_node["id"]
    start_node(procs, endpoint, tmp_config, "--name", "plain", "--labels", "zone=lab")
    nodes = {n["name"]: n for n in wait_nodes(web.url, 2)}

    plugged, plain = nodes["with-plugin"]["capabilities"], nodes["plain"]["capabilities"]
    assert MODEL in plugged["models"] and MODEL not in plain["models"]
    assert plugged["labels"] == {"zone": "lab", LABEL[0]: LABEL[1]}, "node_labels merged over --labels"
    assert plain["labels"] == {"zone": "lab"}
    assert "cpu" in nodes["with-plugin"]["queues"] and "cpu" in nodes["plain"]["queues"]

    tasks = [api_submit(web.url, MODEL) for _ in range(3)]
    # Dispatch is first come, first served: this younger task reaches the idle plain node only after
    # the scheduler passed over the older ones for it, so once it is done they were refused there.
    other = wait_status(web.url, api_submit(web.url, "cv2")["id"], ["completed", "failed"], 60)
    assert other["status"] == "completed" and other["node"] == nodes["plain"]["id"], other
    assert [api_task(web.url, t["id"])["status"] for t in tasks] == ["queued"] * 3, "they wait for their node"

    assert requests.delete(f"{web.url}/api/v1/tasks/{long_task['id']}", timeout=10).status_code == 200
    done = [wait_status(web.url, task["id"], ["completed", "failed"], 120) for task in tasks]
    assert [t["status"] for t in done] == ["completed"] * 3, done
    assert {t["node"] for t in done} == {nodes["with-plugin"]["id"]}, "every task ran on the node with the plugin"
