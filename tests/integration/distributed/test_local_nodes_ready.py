"""``serve`` accepts its first connection once its local nodes can take work, as classic mode does once its
model is loaded: the first requests after a start find a warm node instead of waiting for a node's Python
process, its imports and its model (seconds with a GPU model). A node that does not start in
``distributed.local_nodes_ready_timeout_s`` delays the server by that long, not forever."""

from __future__ import annotations

import os
import re
import signal

import requests

from lama_cleaner.plugins.distributed.producer.local_nodes import ready_local_nodes
from tests.support.server_process import ServerProcess, free_port_block
from tests.support.waiting import wait_for

from .conftest import FAKE_PLUGIN, FAST, api_nodes, mask_png, merged, png, task_form, write_config

RECORDER = "tests.support.lifecycle_recorder"


def test_ready_local_nodes_counts_this_servers_nodes_with_credit_or_work():
    nodes = [
        {"pid": 10, "credit": ["cpu"], "tasks": []},
        {"pid": 11, "credit": [], "tasks": ["t1"]},  # working: it took work, so it was ready
        {"pid": 12, "credit": [], "tasks": []},  # joined, still loading its model
        {"pid": 99, "credit": ["cpu"], "tasks": []},  # another server's local node, same external scheduler
    ]
    assert ready_local_nodes(nodes, [10, 11, 12]) == 2
    assert ready_local_nodes(nodes, []) == 0


def _server(
    tmp_path, extra: dict, *, plugins: str, env: dict[str, str] | None = None, local_nodes: int
) -> ServerProcess:
    config = write_config(tmp_path, merged(FAST, {"distributed": extra}))
    args = [
        "--plugins", plugins, "--config", str(config), "--local-nodes", str(local_nodes),
        "--data-dir", str(tmp_path / "journal"), "--scheduler-bind", f"tcp://127.0.0.1:{free_port_block()}",
    ]  # fmt: skip
    return ServerProcess(args, env=env)


def test_serve_answers_its_first_request_only_once_its_local_nodes_can_take_work(tmp_path):
    with _server(tmp_path, {}, plugins=f"distributed,{FAKE_PLUGIN}", local_nodes=2) as server:
        # The very first answer of the server (ServerProcess waits for GET /model): both nodes already
        # joined, loaded and offered credit, so a first /inpaint is dispatched at once.
        nodes = api_nodes(server.url)
        assert len(nodes) == 2 and all(n["credit"] for n in nodes), nodes
        assert "2 local node(s) ready after" in server.output()


def test_serve_stops_waiting_for_a_local_node_that_does_not_start(tmp_path):
    hold = tmp_path / "release"  # the node's startup hook waits for this file (tests/support/lifecycle_recorder.py)
    env = {"LAMA_TEST_LIFECYCLE_HOLD": str(hold)}
    extra = {"local_nodes_ready_timeout_s": 1.0}
    with _server(tmp_path, extra, plugins=f"distributed,{FAKE_PLUGIN},{RECORDER}", env=env, local_nodes=1) as server:
        out = server.output()
        assert "serving with 0 of 1 local node(s) ready after 1 s" in out, out[-4000:]
        assert not api_nodes(server.url)  # serving although the node is still in its startup
        hold.touch()
        files = {"image": ("i.png", png()), "mask": ("m.png", mask_png())}
        r = requests.post(f"{server.url}/inpaint", data=task_form(), files=files, timeout=60)
        assert r.status_code == 200, r.text  # queued until the node joined, then served
        wait_for(lambda: len(api_nodes(server.url)) == 1, 30, "the released node listed")


def test_serve_does_not_wait_for_a_local_node_that_joined_no_queue(tmp_path):
    # A CPU node asking only for the gpu queue is refused it (gpu_queue_requires_gpu): it can never take
    # work, so the server says so and serves instead of waiting out the 120 s.
    extra = {"local_node_queues": ["gpu"]}
    with _server(tmp_path, extra, plugins=f"distributed,{FAKE_PLUGIN}", local_nodes=1) as server:
        out = server.output()
        assert "serving with 0 of 1 local node(s) ready: local-1 joined no queue" in out, out[-4000:]


def test_serve_does_not_wait_for_a_local_node_that_exits_while_starting(tmp_path):
    env = {"LAMA_TEST_LIFECYCLE_FAIL": "startup:node"}  # every local node refuses to start (and is restarted)
    with _server(tmp_path, {}, plugins=f"distributed,{FAKE_PLUGIN},{RECORDER}", env=env, local_nodes=1) as server:
        out = server.output()
        assert "serving with 0 of 1 local node(s) ready: one exited while starting" in out, out[-4000:]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_while_serve_waits_for_its_local_nodes_stops_the_server_and_the_nodes(tmp_path):
    hold = tmp_path / "release"  # never created: the local node stays in its startup
    env = {"LAMA_TEST_LIFECYCLE_HOLD": str(hold)}
    server = _server(tmp_path, {}, plugins=f"distributed,{FAKE_PLUGIN},{RECORDER}", env=env, local_nodes=1)
    proc = server.launch()
    try:
        wait_for(lambda: "waiting up to 120 s for 1 local node" in server.output(), 60, "the server waiting")
        node_pid = int(re.search(r"started local node local-1 \(pid (\d+)\)", server.output()).group(1))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, server.output()[-4000:]  # at once, not after the 120 s
        wait_for(lambda: _gone(node_pid), 30, "the local node stopped with its server")
    finally:
        server.stop()
