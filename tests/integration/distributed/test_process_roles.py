"""The ``startup``/``shutdown`` hooks in the distributed plugin's processes: the standalone scheduler
(role ``scheduler``), a node (``node``) and the node's inference child (``inference``).

Real processes with the lifecycle recorder loaded; each line it writes names the hook, the role and
the pid of the process that ran it, so the test sees that every role runs in its own process, and
that a SIGTERM (how an operator or a supervisor stops them) still runs ``shutdown``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.server_process import REPO_ROOT, server_env
from tests.support.waiting import wait_for

from .conftest import FAKE_PLUGIN, Proc, free_port_block, start_node

RECORDER = "tests.support.lifecycle_recorder"


def records(path: Path) -> list[tuple[str, str, int]]:
    """``(hook, role, pid)`` for each line the recorder wrote."""
    if not path.exists():
        return []
    return [(hook, role, int(pid)) for hook, role, pid in (line.split() for line in path.read_text().splitlines())]


def test_scheduler_node_and_inference_child_each_run_their_role(tmp_path: Path, procs: list[Proc], tmp_config: Path):
    log = tmp_path / "lifecycle.log"
    env = {"LAMA_TEST_LIFECYCLE_FILE": str(log), "LAMA_TEST_LIFECYCLE_PID": "1"}
    endpoint = f"tcp://127.0.0.1:{free_port_block()}"
    scheduler = Proc(["scheduler", "--bind", endpoint, "--data-dir", str(tmp_path / "data"),
                      "--config", str(tmp_config), "--plugins", f"{FAKE_PLUGIN},{RECORDER}"], env=env)  # fmt: skip
    procs.append(scheduler)
    wait_for(lambda: ("startup", "scheduler", scheduler.pid) in records(log), 60, "the scheduler's startup")
    wait_for(lambda: "scheduler ready" in scheduler.output(), 60, "the scheduler to listen")

    node = start_node(procs, endpoint, tmp_config, "--plugins", f"{FAKE_PLUGIN},{RECORDER}", env=env)
    child = wait_for(
        lambda: next((pid for hook, role, pid in records(log) if (hook, role) == ("startup", "inference")), None),
        120,
        "the inference child's startup",
    )
    assert ("startup", "node", node.pid) in records(log)
    assert child not in (node.pid, scheduler.pid), "the inference role runs in a process of its own"
    assert Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(node.pid), "a child of the node"

    # The node terminates its child (SIGTERM) to stop a model that cannot be interrupted: shutdown runs.
    os.kill(child, signal.SIGTERM)
    wait_for(lambda: ("shutdown", "inference", child) in records(log), 30, "the terminated child's shutdown")
    child = wait_for(
        lambda: next((pid for hook, role, pid in records(log) if (hook, role) == ("startup", "inference")
                      and pid != child), None),
        120,
        "the node to start a new inference child",
    )  # fmt: skip

    node.kill(signal.SIGTERM)
    assert node.proc.wait(30) == 0, node.output()[-3000:]
    wait_for(lambda: ("shutdown", "inference", child) in records(log), 10, "the inference child's shutdown")
    node_lines = [r for r in records(log) if r[2] in (node.pid, child)]
    assert node_lines[0] == ("startup", "node", node.pid)
    assert node_lines[-1] == ("shutdown", "node", node.pid), "the node shuts down after its inference child"
    assert [hook for hook, _, pid in node_lines if pid == node.pid] == ["startup", "shutdown"]
    assert [hook for hook, _, pid in node_lines if pid == child] == ["startup", "shutdown"]

    scheduler.kill(signal.SIGTERM)
    assert scheduler.proc.wait(30) == 0, scheduler.output()[-3000:]
    assert [r for r in records(log) if r[2] == scheduler.pid] == [
        ("startup", "scheduler", scheduler.pid),
        ("shutdown", "scheduler", scheduler.pid),
    ]


def test_a_refused_startup_stops_the_scheduler_in_one_line_and_still_shuts_down(tmp_path: Path):
    log = tmp_path / "lifecycle.log"
    env = server_env({"LAMA_TEST_LIFECYCLE_FILE": str(log), "LAMA_TEST_LIFECYCLE_FAIL": "startup"})
    argv = ["scheduler", "--bind", f"tcp://127.0.0.1:{free_port_block()}", "--data-dir", str(tmp_path / "data"),
            "--plugins", RECORDER]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "lama_cleaner", *argv], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "lama-cleaner scheduler: error: the lifecycle recorder refuses to start" in result.stderr
    assert "Traceback" not in result.stderr
    assert log.read_text().splitlines() == ["startup scheduler", "shutdown scheduler"]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir()), "no journal was opened"


def test_a_refused_startup_stops_a_node_before_it_says_hello(tmp_path: Path, tmp_config: Path):
    log = tmp_path / "lifecycle.log"
    env = server_env({"LAMA_TEST_LIFECYCLE_FILE": str(log), "LAMA_TEST_LIFECYCLE_FAIL": "startup"})
    argv = ["node", "--scheduler", f"tcp://127.0.0.1:{free_port_block()}", "--device", "cpu",
            "--config", str(tmp_config), "--plugins", RECORDER]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "lama_cleaner", *argv], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "lama-cleaner node: error: the lifecycle recorder refuses to start"
    assert "Traceback" not in result.stderr
    assert log.read_text().splitlines() == ["startup node", "shutdown node"], "no inference child was started"


def test_a_node_signalled_while_it_starts_stops_before_it_says_hello(
    tmp_path: Path, procs: list[Proc], tmp_config: Path
) -> None:
    """The SIGTERM a local node gets when the server stops while the node is still starting: it leaves with 0,
    without an inference process, without a HELLO, even though the start-up code it landed in swallows
    exceptions (the node once raised from the signal handler, which such code ate: the node then ran on)."""
    log, hold = tmp_path / "lifecycle.log", tmp_path / "release"
    env = {"LAMA_TEST_LIFECYCLE_FILE": str(log), "LAMA_TEST_LIFECYCLE_PID": "1", "LAMA_TEST_LIFECYCLE_HOLD": str(hold)}
    node = start_node(procs, f"tcp://127.0.0.1:{free_port_block()}", tmp_config, "--plugins", RECORDER, env=env)
    wait_for(lambda: ("startup", "node", node.pid) in records(log), 60, "the node's startup hook")

    node.kill(signal.SIGTERM)
    wait_for(lambda: "signal 15: stopping" in node.output(), 10, "the node to take the signal")
    hold.touch()  # start-up goes on: the node exists now, and must not run

    assert node.proc.wait(30) == 0, node.output()[-3000:]
    assert [(hook, role) for hook, role, _ in records(log)] == [("startup", "node"), ("shutdown", "node")], (
        "no inference child was started"
    )
    assert "says HELLO" not in node.output()
