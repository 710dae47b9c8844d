"""After a task is cancelled or its inference process dies, the node's next TASK must run, not bounce.

The scheduler counts CANCELLED (like RESULT and FAILED) as the node's next READY and may hand it the
next queued task at once. A node that had to kill its inference process to cancel must therefore
only say CANCELLED once a fresh process is ready, and a TASK that still arrives while the process
restarts (after a crash: FAILED went out first, with ``ready: false``, but a scheduler may have sent
the TASK anyway) must wait for it and run, not bounce.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests

from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import (
    DistServer,
    Proc,
    ScriptedScheduler,
    api_submit,
    handshake,
    start_node,
    wait_for,
    wait_nodes,
    wait_status,
)


def _busy_with(scripted: ScriptedScheduler, task_id: str) -> None:
    def busy() -> bool:
        return scripted.recv(5, [p.HEARTBEAT])[2].header.get("task_id") == task_id

    wait_for(busy, 30, f"node busy with {task_id}")


def test_a_task_sent_right_after_cancelled_runs_on_the_new_inference_process(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, _ = handshake(scripted)
    scripted.send_task(qident, "blk", "block", "60000")
    _busy_with(scripted, "blk")
    scripted.send("control", ident, p.CANCEL, {"task_id": "blk", "attempt": 1})
    _, _, cancelled = scripted.recv(10, [p.CANCELLED])
    assert cancelled.header["task_id"] == "blk"
    # What the real scheduler does: CANCELLED is a credit, so the next task goes out at once,
    # without waiting for the READY that follows.
    scripted.send_task(qident, "next", "sleep", "10")
    _, _, outcome = scripted.recv(30, [p.RESULT, p.FAILED])
    assert outcome.command == p.RESULT, outcome.header
    assert outcome.header["task_id"] == "next"


def _inference_child(node_pid: int) -> int:
    """The pid of the node's inference process (its multiprocessing child that is not the tracker)."""
    children = Path(f"/proc/{node_pid}/task/{node_pid}/children").read_text().split()
    for pid in children:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"resource_tracker" not in cmdline:
            return int(pid)
    raise AssertionError(f"no inference process among {children}")


def test_a_task_sent_while_the_inference_process_restarts_waits_for_it(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    node = start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, _ = handshake(scripted)
    scripted.send_task(qident, "doomed", "block", "60000")
    _busy_with(scripted, "doomed")
    os.kill(_inference_child(node.pid), signal.SIGKILL)
    _, _, failed = scripted.recv(10, [p.FAILED])
    assert failed.header["task_id"] == "doomed" and failed.header["retryable"] is True
    scripted.send_task(qident, "next", "sleep", "10")  # FAILED counted as the credit, as the scheduler does
    _, _, outcome = scripted.recv(30, [p.RESULT, p.FAILED])
    assert outcome.command == p.RESULT, outcome.header
    assert outcome.header["task_id"] == "next"


def _retry_once_config(directory: Path) -> Path:
    """The FAST test settings plus ``[distributed.retry.inpaint] max_attempts = 1``, as TOML."""
    path = directory / "config.toml"
    path.write_text(
        "[distributed]\n"
        "heartbeat_interval_s = 0.2\n"
        "heartbeat_liveness = 3\n"
        "reconnect_min_s = 0.1\n"
        "reconnect_max_s = 0.4\n"
        "\n"
        "[distributed.retry.inpaint]\n"
        "max_attempts = 1\n"
        "backoff_base_s = 0.05\n"
        "backoff_max_s = 0.2\n"
    )
    return path


@pytest.mark.slow
def test_cancelling_an_uninterruptible_task_does_not_cost_the_next_task_an_attempt(
    tmp_path: Path, servers: list[DistServer]
):
    dist = DistServer(tmp_path / "data", _retry_once_config(tmp_path), local_nodes=1)
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    blocked = api_submit(dist.url, "block", "60000")
    wait_status(dist.url, blocked["id"], ["processing"], 30)
    waiting = api_submit(dist.url, "sleep", "10")
    assert wait_status(dist.url, waiting["id"], ["queued"], 5)["max_attempts"] == 1
    assert requests.delete(f"{dist.url}/api/v1/tasks/{blocked['id']}", timeout=10).status_code == 200
    done = wait_status(dist.url, waiting["id"], ["completed", "failed", "cancelled"], 30)
    assert done["status"] == "completed", done
    assert done["attempts"] == 1
