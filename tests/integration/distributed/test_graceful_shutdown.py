"""SIGTERM on the web server (distributed mode, embedded scheduler), with real processes.

While it drains, new work is refused with 503 (plain text on the classic routes, JSON under
``/api/v1``, health ``unavailable``) and reads are still answered; the classic request in flight
finishes with its image; the process exits within the grace period; the tasks accepted through
``/api/v1`` survive in the journal and all complete after a restart on the same data directory.
A request that outlasts ``server.shutdown_grace_s`` does not hold the process beyond it.

SIGTERM to a whole process group (a shell's ``kill -TERM -PGID``, supervisord's ``stopasgroup``) reaches
the web process or the node only: local nodes and inference processes run in sessions of their own, and
are stopped by whoever started them once the work in flight is done.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.distributed_config import FAST
from tests.support.waiting import wait_for

from .conftest import (
    DistServer,
    Proc,
    api_submit,
    api_task,
    mask_png,
    merged,
    png,
    start_node,
    task_form,
    wait_nodes,
    wait_status,
    write_config,
)

pytestmark = pytest.mark.slow

TIMEOUT = 30


InFlight = dict[str, "requests.Response | BaseException"]
"""Where a request thread leaves its reply (or what it raised), under ``"reply"``."""


def _classic_inpaint(url: str, prompt: str, out: InFlight) -> None:
    try:
        out["reply"] = requests.post(
            f"{url}/inpaint",
            data=task_form(prompt),
            files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
            timeout=120,
        )
    except requests.RequestException as exc:
        out["reply"] = exc


def _processing(url: str) -> list[dict]:
    return requests.get(f"{url}/api/v1/tasks", params={"status": "processing"}, timeout=TIMEOUT).json()["tasks"]


def _request_running(url: str, prompt: str, *, daemon: bool = False) -> tuple[threading.Thread, InFlight]:
    """A classic ``/inpaint`` of the sleep model (``prompt`` ms) in a thread, once its task runs on the node."""
    in_flight: InFlight = {}
    thread = threading.Thread(target=_classic_inpaint, args=(url, prompt, in_flight), daemon=daemon)
    thread.start()
    wait_for(lambda: _processing(url), TIMEOUT, "the classic request's task to run on the node")
    return thread, in_flight


def _finished_with_an_image(thread: threading.Thread, in_flight: InFlight) -> None:
    thread.join(TIMEOUT * 2)
    reply = in_flight["reply"]
    assert isinstance(reply, requests.Response), reply
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("image/"), "in flight finishes"


def _sigterm(server: DistServer) -> None:
    assert server.server.proc is not None
    os.kill(server.server.proc.pid, signal.SIGTERM)  # the web process only, as `docker stop` does


def test_sigterm_refuses_new_work_finishes_in_flight_and_accepted_tasks_survive(tmp_path: Path, servers):
    config = write_config(tmp_path, merged(FAST, {"server": {"shutdown_grace_s": 60}}))
    first = DistServer(tmp_path / "data", config, model="sleep").start()
    servers.append(first)

    thread, in_flight = _request_running(first.url, "4000")
    accepted = [api_submit(first.url, "sleep", "300")["id"] for _ in range(5)]

    stopped_at = time.monotonic()
    _sigterm(first)

    def refused_now() -> requests.Response | None:
        reply = requests.post(f"{first.url}/inpaint", data=task_form("10"), timeout=TIMEOUT)
        return reply if reply.status_code == 503 else None

    refused = wait_for(lambda: (reply := refused_now()) is not None and [reply], TIMEOUT, "a 503 for new work")[0]
    assert refused.headers["Content-Type"].startswith("text/plain") and "shutting down" in refused.text
    assert refused.headers["Retry-After"]
    api_refused = requests.post(
        f"{first.url}/api/v1/tasks",
        data={"model": "sleep", "prompt": "10"},
        files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
        timeout=TIMEOUT,
    )
    assert api_refused.status_code == 503 and api_refused.json()["error"]["code"] == "shutting_down"
    health = requests.get(f"{first.url}/api/v1/health", timeout=TIMEOUT)
    assert health.status_code == 503 and "shutting down" in health.json()["reason"]
    assert api_task(first.url, accepted[0])["id"] == accepted[0], "reads are still answered while draining"

    _finished_with_an_image(thread, in_flight)

    assert first.server.proc is not None
    code = first.server.proc.wait(TIMEOUT)
    assert code == 0, first.server.output()[-3000:]
    assert time.monotonic() - stopped_at < 60, "within the grace period"
    assert "development server" not in first.server.output()

    second = DistServer(tmp_path / "data", config, model="sleep", scheduler_port=first.scheduler_port).start()
    servers.append(second)
    for task_id in accepted:
        wait_for(lambda t=task_id: api_task(second.url, t)["status"] == "completed", TIMEOUT * 2, f"task {task_id}")
        result = requests.get(f"{second.url}/api/v1/tasks/{task_id}/result", timeout=TIMEOUT)
        assert result.status_code == 200 and result.content[:4] == b"\x89PNG"


def test_a_request_longer_than_the_grace_period_does_not_hold_the_process(tmp_path: Path, servers):
    config = write_config(tmp_path, merged(FAST, {"server": {"shutdown_grace_s": 1}}))
    server = DistServer(tmp_path / "data", config, model="sleep").start()
    servers.append(server)
    _request_running(server.url, "60000", daemon=True)

    stopped_at = time.monotonic()
    _sigterm(server)
    assert server.server.proc is not None
    server.server.proc.wait(TIMEOUT)
    assert time.monotonic() - stopped_at < 20, "1 s of grace, then the executor and the node stop"
    assert "still in flight after 1s" in server.server.output()


def test_sigterm_to_the_process_group_drains_on_the_local_node_that_runs_the_request(tmp_path: Path, servers):
    """``kill -TERM -PGID`` (a shell script, supervisord's ``stopasgroup``): local nodes run in a session of
    their own, so the signal reaches the web process only. The request in flight finishes on the node that
    runs it, which the server then stops; the node is never stopped early, and never restarted."""
    config = write_config(tmp_path, merged(FAST, {"server": {"shutdown_grace_s": 60}}))
    server = DistServer(tmp_path / "data", config, model="sleep").start()
    servers.append(server)
    thread, in_flight = _request_running(server.url, "3000")

    assert server.server.proc is not None
    os.killpg(server.server.proc.pid, signal.SIGTERM)
    _finished_with_an_image(thread, in_flight)
    assert server.server.proc.wait(TIMEOUT) == 0, server.server.output()[-3000:]
    output = server.server.output()
    assert output.count("started local node") == 1 and "restarting in" not in output, output[-3000:]
    assert output.count("signal 15: stopping") == 1, "the one SIGTERM the node gets is the server's, at the end"


def test_sigterm_to_a_nodes_process_group_lets_its_task_finish_uncharged(tmp_path: Path, servers, procs: list[Proc]):
    """The inference process is not in its node's group: the node takes the signal, finishes its task within
    its grace and stops the inference process itself. (Sharing the group, that process died at once and
    the task's attempt failed as "inference process exited unexpectedly".)"""
    config = write_config(tmp_path, FAST)
    server = DistServer(tmp_path / "data", config, local_nodes=0).start()
    servers.append(server)
    node = start_node(procs, server.scheduler, config, "--stop-grace", "60")
    wait_nodes(server.url, 1)
    task_id = api_submit(server.url, "sleep", "2000")["id"]
    wait_status(server.url, task_id, ["processing"])

    os.killpg(node.pid, signal.SIGTERM)  # Proc starts the node as the leader of its own group
    assert node.proc.wait(TIMEOUT) == 0, node.output()[-3000:]
    task = wait_status(server.url, task_id, ["completed", "failed", "queued"])
    assert task["status"] == "completed" and task["attempts"] == 1, (task, node.output()[-3000:])
