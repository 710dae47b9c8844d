"""A node that reconnects (says HELLO again) while its task runs must keep that task: it runs once.

The node's HELLO names what it is still running (``task_id`` + ``attempt``). If the scheduler took
every HELLO from a busy node as "that node restarted", it would re-queue the task and an idle node
would run it a second time while the first run is still going.

The reconnect is produced for real: node A's control connection goes through a loopback proxy that
stops delivering scheduler -> node bytes (node -> scheduler still flows, so the scheduler keeps
hearing A's heartbeats and never declares it lost). A hears nothing, recreates its sockets and says
HELLO again on a fresh connection, in the middle of a ``count`` task. Node B sits idle meanwhile,
ready to take the task if the scheduler wrongly gives it away.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tcp_proxy import LoopbackProxy

from .conftest import (
    FAST,
    DistServer,
    Proc,
    api_nodes,
    api_submit,
    merged,
    start_node,
    wait_for,
    wait_nodes,
    wait_status,
    write_config,
)

pytestmark = pytest.mark.slow

COUNT_MS = 6000
"""Long enough for B to start and for A to notice the silence (1.2 s) and reconnect mid-task."""


def test_a_node_that_reconnects_mid_task_keeps_it_and_the_task_runs_once(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    count_file = tmp_path / "count.txt"
    env = {"LAMA_TEST_COUNT_FILE": str(count_file)}
    # A 1.2 s liveness window (0.4 s x 3) with a 0.1 s reconnect: A is back ~1 s before the
    # scheduler would call it lost, so only the HELLO itself can cost A its task.
    config = write_config(tmp_path, merged(FAST, {"distributed": {"heartbeat_interval_s": 0.4}}))
    dist = DistServer(tmp_path / "data", config, local_nodes=0, env=env)
    servers.append(dist.start())
    proxy = LoopbackProxy(dist.scheduler_port)
    try:
        start_node(procs, proxy.endpoint, config, "--name", "node-a", env=env)
        [a] = wait_nodes(dist.url, 1)
        task = api_submit(dist.url, "count", f"marker=once {COUNT_MS}")
        running = wait_status(dist.url, task["id"], ["processing"], 30)
        assert running["node"] == a["id"]
        start_node(procs, dist.scheduler, config, "--name", "node-b", env=env)
        wait_for(
            lambda: any(n["name"] == "node-b" and n["state"] == "idle" for n in api_nodes(dist.url)), 60, "node-b idle"
        )
        assert wait_status(dist.url, task["id"], ["processing"], 1)["node"] == a["id"]  # still A's

        proxy.cut_to_client()
        wait_for(lambda: proxy.connections >= 2, 20, "node-a to reconnect (a second proxied connection)")

        done = wait_status(dist.url, task["id"], ["completed", "failed", "cancelled"], 60)
        assert done["status"] == "completed", done
        assert done["attempts"] == 1, done  # never handed to node-b
        assert done["node"] == a["id"]
        assert count_file.read_text().split() == ["once"]
    finally:
        proxy.close()
