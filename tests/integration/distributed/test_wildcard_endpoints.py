"""A scheduler listening on every interface grants queue endpoints like ``tcp://0.0.0.0:5571``.

That address means "any interface" to ``bind`` and nothing useful to a remote node, so the node
connects to the host it used for the control endpoint instead (``endpoints.queue_endpoint_for``, whose
rules are unit-tested in tests/unit/distributed/test_endpoints.py; these tests run the real node).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.curve_keys import KeyRing

from .conftest import FAST, DistServer, Proc, ScriptedScheduler, api_submit, merged, start_node, wait_for, wait_nodes
from .conftest import write_config as write_json


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "*"])
def test_node_joins_a_wildcard_queue_through_the_control_host(procs: list[Proc], tmp_config, wildcard: str):
    # The scripted scheduler listens on 127.0.0.2 only. Connecting to 0.0.0.0 reaches 127.0.0.1, where
    # nothing listens, and "tcp://*:PORT" is not even a valid connect address: only the substitution works.
    sched = ScriptedScheduler(host="127.0.0.2")
    try:
        start_node(procs, sched.endpoint, tmp_config)
        _, ident, hello = sched.recv(60, [p.HELLO])
        node_id = hello.header["node_id"]
        sched.welcome(ident, node_id, queue_endpoint=f"tcp://{wildcard}:{sched.queue_port}")
        where, qident, ready = sched.recv(30, [p.READY])
        assert where == "queue" and ready.header["node_id"] == node_id
        sched.send_task(qident, "w1", "sleep", "10")
        _, _, result = sched.recv(30, [p.RESULT, p.FAILED])
        assert result.command == p.RESULT and result.header["task_id"] == "w1"
    finally:
        sched.close()


@pytest.mark.slow
def test_scheduler_bound_to_every_interface_serves_a_node_that_connects_by_address(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    # Listening on every interface requires CURVE keys (docs/security.md): the remote node has its own.
    ring = KeyRing(tmp_path, ("remote",))
    ring.allow("remote")
    config = write_json(tmp_path, merged(FAST, {"distributed": ring.scheduler_settings()}))
    node_config = write_json(tmp_path, merged(FAST, {"distributed": ring.client_settings("remote")}), "node.json")
    dist = DistServer(tmp_path / "data", config, local_nodes=0, bind_host="0.0.0.0")
    servers.append(dist.start())
    node = start_node(procs, dist.scheduler, node_config, "--name", "remote")  # tcp://127.0.0.1:<port>
    wait_nodes(dist.url, 1)
    task = api_submit(dist.url, "sleep", "10")
    done = wait_for(
        lambda: (
            (t := requests.get(f"{dist.url}/api/v1/tasks/{task['id']}", timeout=10).json())["status"]
            in ("completed", "failed")
            and t
        ),
        30,
        "the task to finish",
    )
    assert done["status"] == "completed", done
    # The WELCOME said tcp://0.0.0.0:<cpu port>; the node connected to the address it used for control.
    cpu_port = dist.scheduler_port + 2  # control, then gpu, then cpu (docs/protocol.md section 2)
    log = node.output()
    assert f"joining queue cpu at tcp://127.0.0.1:{cpu_port}" in log, log[-3000:]
