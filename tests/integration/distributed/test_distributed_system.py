"""The whole distributed system, for real: web server (embedded or external scheduler), SQLite journal,
node subprocesses with their inference children, ZeroMQ over loopback, HTTP and Socket.IO clients.

Fault tests run with a 0.2 s heartbeat (``FAST`` in tests/support/distributed_config.py), so a node is
declared offline after 0.6 s of silence.
"""

from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from .conftest import (
    FAKE_PLUGIN,
    FAST,
    DistServer,
    Proc,
    api_nodes,
    api_submit,
    api_task,
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

pytestmark = pytest.mark.slow


def _inpaint(url: str, **headers: str) -> requests.Response:
    return requests.post(
        f"{url}/inpaint",
        data=task_form(),
        files={"image": ("i.png", png(64, 40, seed=7)), "mask": ("m.png", mask_png(64, 40))},
        headers=headers,
        timeout=60,
    )


def test_cv2_inpaint_through_nodes_is_byte_identical_to_classic(tmp_path: Path, servers: list[DistServer]):
    from tests.support.server_process import ServerProcess

    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    with ServerProcess() as classic:
        expected = _inpaint(classic.url)
    got = _inpaint(dist.url)
    assert expected.status_code == 200 and got.status_code == 200, got.text
    assert got.headers["Content-Type"] == expected.headers["Content-Type"]
    assert got.content == expected.content
    # Bad input is refused before queueing, with the classic plain-text 400.
    bad = requests.post(f"{dist.url}/inpaint", data=task_form(), files={"image": ("i.png", png())}, timeout=30)
    assert bad.status_code == 400 and bad.headers["Content-Type"].startswith("text/plain")
    assert "mask" in bad.text


def test_progress_events_reach_the_submitter(tmp_path: Path, servers: list[DistServer]):
    import socketio

    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    steps: list[int] = []
    statuses: list[str] = []
    other_steps: list[int] = []
    client, bystander = socketio.Client(), socketio.Client()
    client.on("diffusion_progress", lambda data: steps.append(data["step"]))
    client.on("task_status", lambda data: statuses.append(data["status"]))
    bystander.on("diffusion_progress", lambda data: other_steps.append(data["step"]))
    client.connect(dist.url, transports=["websocket"])
    bystander.connect(dist.url, transports=["websocket"])
    try:
        assert requests.post(f"{dist.url}/model", data={"name": "steps"}, timeout=30).status_code == 200
        response = requests.post(
            f"{dist.url}/inpaint",
            data=task_form("steps=4 20"),
            files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
            headers={"X-Socket-ID": client.get_sid()},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        wait_for(lambda: steps == [0, 1, 2, 3], 10, f"steps 0..3 (got {steps})")
        wait_for(lambda: "completed" in statuses, 10, "a completed task_status")
        assert "processing" in statuses
        assert other_steps == []  # progress goes to the submitter only
    finally:
        client.disconnect()
        bystander.disconnect()


def test_node_killed_mid_task_the_task_completes_on_another(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    config = write_config(tmp_path, FAST)
    dist = DistServer(tmp_path / "data", config, local_nodes=0)
    servers.append(dist.start())
    a = start_node(procs, dist.scheduler, config, "--name", "node-a")
    b = start_node(procs, dist.scheduler, config, "--name", "node-b")
    wait_nodes(dist.url, 2)
    task = api_submit(dist.url, "sleep", "2500")
    running = wait_status(dist.url, task["id"], ["processing"], 30)
    names = {n["id"]: n["name"] for n in api_nodes(dist.url)}
    victim, survivor = (a, "node-b") if names[running["node"]] == "node-a" else (b, "node-a")
    victim.kill(signal.SIGKILL)
    done = wait_status(dist.url, task["id"], ["completed", "failed"], 30)
    assert done["status"] == "completed", done
    assert done["attempts"] == 2
    assert names.get(done["node"], done["node"]) == survivor
    body = requests.get(f"{dist.url}/api/v1/tasks/{task['id']}/result", timeout=10)
    assert body.status_code == 200 and body.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_server_killed_with_100_queued_tasks_all_complete_exactly_once_after_restart(
    tmp_path: Path, servers: list[DistServer]
):
    count_file = tmp_path / "count.txt"
    env = {"LAMA_TEST_COUNT_FILE": str(count_file)}
    config = write_config(tmp_path, FAST)
    data = tmp_path / "data"
    first = DistServer(data, config, local_nodes=0, env=env)
    servers.append(first.start())
    ids = [api_submit(first.url, "count", f"marker=m{i:03d}")["id"] for i in range(100)]
    assert all(api_task(first.url, i)["status"] == "queued" for i in ids[:3])
    first.sigkill()

    second = DistServer(data, config, local_nodes=2, env=env, scheduler_port=first.scheduler_port)
    servers.append(second.start())

    def all_completed() -> bool:
        page = requests.get(f"{second.url}/api/v1/tasks", params={"status": "completed", "limit": 1}, timeout=10)
        return page.json()["total"] == 100

    wait_for(all_completed, 120, "all 100 tasks to complete after the restart")
    assert {api_task(second.url, i)["status"] for i in ids[::10]} == {"completed"}
    for task_id in ids:  # every result is there, by id, on the restarted server
        body = requests.get(f"{second.url}/api/v1/tasks/{task_id}/result", timeout=10)
        assert body.status_code == 200 and body.content[:8] == b"\x89PNG\r\n\x1a\n", (task_id, body.text)
    lines = count_file.read_text().split()
    assert sorted(lines) == [f"m{i:03d}" for i in range(100)]  # every task ran, none twice


@pytest.mark.parametrize("restart", ["while_running", "after_they_finished"])
def test_server_killed_with_tasks_in_flight_on_nodes_all_complete_once_after_restart(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc], restart: str
):
    """SIGKILL the web server (and its embedded scheduler) while two nodes are in the middle of a task.

    The nodes are separate processes, so they live on. ``while_running``: the new server is started
    at once and comes up while both tasks still run, so the nodes reclaim them by naming them in
    their HELLO. ``after_they_finished``: it is started only once both tasks have finished on the
    orphaned nodes, which keep the outcomes and deliver them after the new WELCOME. Either way
    start-up recovery must not hand those tasks to another node: every task runs exactly once
    (``count`` file) and is dispatched exactly once (``dispatches`` in the journal).
    """
    import sqlite3

    count_file = tmp_path / "count.txt"
    env = {"LAMA_TEST_COUNT_FILE": str(count_file)}
    # A 2 s liveness window (the restarted scheduler holds dispatch that long for the interrupted
    # tasks to be reclaimed) against a 0.4 s reconnect cap: the nodes are back well within it.
    config = write_config(
        tmp_path, merged(FAST, {"distributed": {"heartbeat_interval_s": 0.5, "heartbeat_liveness": 4}})
    )
    data = tmp_path / "data"
    first = DistServer(data, config, local_nodes=0, env=env)
    servers.append(first.start())
    nodes = [start_node(procs, first.scheduler, config, "--name", f"node-{x}", env=env) for x in "ab"]
    wait_nodes(first.url, 2)
    slow = [api_submit(first.url, "count", f"marker=slow{i} 3000")["id"] for i in range(2)]
    fast = [api_submit(first.url, "count", f"marker=fast{i:02d} 50")["id"] for i in range(10)]
    running = [wait_status(first.url, task_id, ["processing"], 30) for task_id in slow]
    assert running[0]["node"] != running[1]["node"]  # one on each node
    assert not count_file.exists()  # nothing finished yet: both are really in flight
    first.sigkill()
    assert all(node.alive() for node in nodes)
    if restart == "after_they_finished":
        wait_for(
            lambda: count_file.exists() and sorted(count_file.read_text().split()) == ["slow0", "slow1"],
            20,
            "both in-flight tasks to finish on their orphaned nodes",
        )

    second = DistServer(data, config, local_nodes=0, env=env, scheduler_port=first.scheduler_port)
    servers.append(second.start())
    ids = slow + fast
    for task_id in ids:
        done = wait_status(second.url, task_id, ["completed", "failed", "cancelled"], 45)
        assert done["status"] == "completed", done
    lines = count_file.read_text().split()
    assert sorted(lines) == sorted([f"slow{i}" for i in range(2)] + [f"fast{i:02d}" for i in range(10)])

    expected = cv2.imdecode(np.frombuffer(png(), np.uint8), cv2.IMREAD_COLOR)
    for task_id in ids:  # every result, by id, from the restarted server
        body = requests.get(f"{second.url}/api/v1/tasks/{task_id}/result", timeout=10)
        assert body.status_code == 200 and body.headers["Content-Type"] == "image/png", body.text
        assert np.array_equal(cv2.imdecode(np.frombuffer(body.content, np.uint8), cv2.IMREAD_COLOR), expected)

    db = sqlite3.connect(data / "journal.sqlite3", timeout=10)
    try:
        rows = dict(db.execute("SELECT id, dispatches FROM tasks").fetchall())
    finally:
        db.close()
    assert rows == dict.fromkeys(ids, 1), rows  # none handed to a second node


def test_full_queue_answers_503_with_retry_after_and_plain_text(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    config = write_config(tmp_path, merged(FAST, {"distributed": {"max_queued": 2, "retry_after_s": 7}}))
    dist = DistServer(tmp_path / "data", config, local_nodes=0)
    servers.append(dist.start())
    accepted = [api_submit(dist.url, "sleep", "10"), api_submit(dist.url, "sleep", "10")]
    response = _inpaint(dist.url)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text and "<" not in response.text
    # The refusal cost the accepted tasks nothing: once a node is there, every one of them completes,
    # and the refused request left no task behind.
    start_node(procs, dist.scheduler, config, "--name", "late")
    for task in accepted:
        done = wait_status(dist.url, task["id"], ["completed", "failed", "cancelled"], 60)
        assert done["status"] == "completed", done
        body = requests.get(f"{dist.url}/api/v1/tasks/{task['id']}/result", timeout=10)
        assert body.status_code == 200 and body.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert requests.get(f"{dist.url}/api/v1/tasks", timeout=10).json()["total"] == len(accepted)
    # With room again, the same request is accepted and answered.
    assert _inpaint(dist.url).status_code == 200


def test_cpu_only_node_never_receives_gpu_work(tmp_path: Path, servers: list[DistServer]):
    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    servers.append(dist.start())
    [node] = wait_nodes(dist.url, 1)
    assert node["queues"] == ["cpu"]
    gpu_task = api_submit(dist.url, "gpu_sleep", "10")
    cpu_tasks = [api_submit(dist.url, "sleep", "10") for _ in range(3)]
    for task in cpu_tasks:
        assert wait_status(dist.url, task["id"], ["completed", "failed"], 30)["status"] == "completed"
    gpu = api_task(dist.url, gpu_task["id"])
    assert gpu["status"] == "queued" and gpu["queue"] == "gpu" and gpu["attempts"] == 0


def test_long_task_on_one_node_does_not_delay_a_short_task(tmp_path: Path, servers: list[DistServer]):
    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=2)
    servers.append(dist.start())
    wait_nodes(dist.url, 2)
    long_task = api_submit(dist.url, "block", "8000")
    wait_status(dist.url, long_task["id"], ["processing"], 30)
    short = api_submit(dist.url, "sleep", "10")
    done = wait_status(dist.url, short["id"], ["completed", "failed"], 5)
    assert done["status"] == "completed"
    assert api_task(dist.url, long_task["id"])["status"] == "processing"
    cancelled = requests.delete(f"{dist.url}/api/v1/tasks/{long_task['id']}", timeout=10)
    assert cancelled.status_code == 200
    assert wait_status(dist.url, long_task["id"], ["cancelled"], 10)["status"] == "cancelled"


def test_scheduler_restart_nodes_reconnect_and_finish(tmp_path: Path, servers: list[DistServer], procs: list[Proc]):
    config = write_config(tmp_path, FAST)
    endpoint = f"tcp://127.0.0.1:{free_port_block()}"
    data = tmp_path / "sched-data"

    def start_scheduler() -> Proc:
        args = ["--bind", endpoint, "--data-dir", str(data), "--config", str(config), "--plugins", FAKE_PLUGIN]
        proc = Proc(["scheduler", *args])
        procs.append(proc)
        return proc

    scheduler = start_scheduler()
    dist = DistServer(tmp_path / "unused", config, local_nodes=0, external_scheduler=endpoint)
    servers.append(dist.start())
    start_node(procs, endpoint, config, "--name", "n1")
    start_node(procs, endpoint, config, "--name", "n2")
    wait_nodes(dist.url, 2)
    tasks = [api_submit(dist.url, "sleep", "400") for _ in range(6)]
    wait_status(dist.url, tasks[0]["id"], ["processing", "completed"], 30)
    scheduler.kill(signal.SIGKILL)
    scheduler.proc.wait(10)
    start_scheduler()
    for task in tasks:
        done = wait_status(dist.url, task["id"], ["completed", "failed"], 60)
        assert done["status"] == "completed", done
    wait_nodes(dist.url, 2, 30)  # both nodes registered again with the new scheduler
    response = _inpaint(dist.url)  # the web server's producer reconnected too
    assert response.status_code == 200


def test_local_nodes_are_restarted_when_they_die_and_die_with_the_server(tmp_path: Path, servers: list[DistServer]):
    import os

    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    servers.append(dist.start())
    [node] = wait_nodes(dist.url, 1)
    os.kill(node["pid"], signal.SIGKILL)

    def replaced() -> dict | None:
        fresh = [n for n in api_nodes(dist.url) if n["state"] == "idle" and n["pid"] != node["pid"]]
        return fresh[0] if fresh else None

    new_node = wait_for(replaced, 60, "the supervisor to start a new local node")
    assert new_node["name"] == "local-1"
    assert _inpaint(dist.url).status_code == 200
    dist.sigkill()
    wait_for(lambda: not _alive(new_node["pid"]), 10, "the local node to exit after its server was SIGKILLed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def test_classic_request_times_out_with_504_and_its_task_is_cancelled(tmp_path: Path, servers: list[DistServer]):
    config = write_config(tmp_path, merged(FAST, {"distributed": {"request_timeout_s": 1.0}}))
    dist = DistServer(tmp_path / "data", config, local_nodes=0)
    servers.append(dist.start())
    response = _inpaint(dist.url)
    assert response.status_code == 504
    assert response.headers["Content-Type"].startswith("text/plain")
    tasks = requests.get(f"{dist.url}/api/v1/tasks", timeout=10).json()["tasks"]
    assert [t["status"] for t in tasks] == ["cancelled"]
