"""The math libraries' threads in a node's inference process (``lama_cleaner.cpu_threads``): the real node
process and its inference child against a scripted scheduler, and a real server's local nodes.

What is checked is what the libraries of the process that runs the model were told, recorded by the
``threads`` fake model from inside that process: ``OMP_NUM_THREADS`` (what PyTorch, MKL and OpenBLAS
read when they start), OpenCV's thread count, PyTorch's (imported there on the task) and
``OMP_WAIT_POLICY``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import requests

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_for

from .conftest import (
    FAKE_PLUGIN,
    FAST,
    Proc,
    ScriptedScheduler,
    handshake,
    mask_png,
    merged,
    png,
    start_node,
    task_form,
    write_config,
)

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _run_threads_task(scripted: ScriptedScheduler, qident: bytes, record: Path) -> list[str]:
    """One ``threads`` task on the node; what its inference process recorded (four fields)."""
    header = {"task_id": "t1", "attempt": 1, "kind": "inpaint", "name": "threads", "form": task_form()}
    scripted.send("queue", qident, p.TASK, header | {"submitter": None}, {"image": png(), "mask": mask_png()})
    _, _, result = scripted.recv(120, [p.RESULT, p.FAILED])
    assert result.command == p.RESULT, result.header
    return record.read_text().rstrip("\n").split(" ")


def _env(record: Path, **variables: str) -> dict[str, str]:
    """The node's environment: the record file, and OpenMP's variables as given (an empty value is unset
    for the libraries; the node treats an empty OMP_WAIT_POLICY as the operator's choice)."""
    return {"LAMA_TEST_THREADS_FILE": str(record), "OMP_NUM_THREADS": "", "OMP_WAIT_POLICY": ""} | variables


def test_node_threads_flag_limits_the_inference_process(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """``--threads 1``: HELLO says so and the process that runs the model uses one thread in OpenMP,
    OpenCV and PyTorch, even though the operator's environment asked for three."""
    record = tmp_path / "threads.txt"
    env = _env(record, OMP_NUM_THREADS="3")
    start_node(procs, scripted.endpoint, tmp_config, "--models", "threads", "--threads", "1", env=env)
    _, ident, hello = scripted.recv(60, [p.HELLO])
    assert hello.header["capabilities"]["threads"] == 1
    scripted.welcome(ident, hello.header["node_id"])
    _, qident, _ = scripted.recv(60, [p.READY])
    omp, opencv, torch_threads, _ = _run_threads_task(scripted, qident, record)
    assert (omp, opencv, torch_threads) == ("1", "1", "1" if HAS_TORCH else "-")
    assert "1 thread(s)" in procs[0].output()


def test_without_a_setting_the_operators_omp_num_threads_wins(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """(One thread: PyTorch never starts more threads than there are cores, whatever the variable says.)"""
    record = tmp_path / "threads.txt"
    start_node(procs, scripted.endpoint, tmp_config, "--models", "threads", env=_env(record, OMP_NUM_THREADS="1"))
    _, qident, _ = handshake(scripted)
    omp, opencv, torch_threads, _ = _run_threads_task(scripted, qident, record)
    assert (omp, opencv, torch_threads) == ("1", "1", "1" if HAS_TORCH else "-")


def test_a_node_alone_leaves_the_libraries_their_defaults(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """No setting, no ``OMP_NUM_THREADS``: nothing is imposed on a node started by itself (as a node per
    GPU box is); PyTorch's own default (the physical cores) beats any count of logical ones."""
    record = tmp_path / "threads.txt"
    start_node(procs, scripted.endpoint, tmp_config, "--models", "threads", env=_env(record))
    _, ident, hello = scripted.recv(60, [p.HELLO])
    assert hello.header["capabilities"]["threads"] is None
    scripted.welcome(ident, hello.header["node_id"])
    _, qident, _ = scripted.recv(60, [p.READY])
    omp, opencv, _torch, policy = _run_threads_task(scripted, qident, record)
    assert omp == "" and int(opencv) >= 1 and policy == ""  # both variables left as they were (empty)
    assert "the math libraries' default threads" in procs[0].output()


def _local_nodes_server(tmp_path: Path, record: Path, nodes: int, env: dict[str, str]) -> ServerProcess:
    tmp_path.mkdir(exist_ok=True)
    config = write_config(tmp_path, merged(FAST, {"distributed": {"data_dir": str(tmp_path / "journal")}}))
    return ServerProcess(
        ["--plugins", f"distributed,{FAKE_PLUGIN}", "--config", str(config), "--local-nodes", str(nodes)],
        env=env,
        model="threads",
        ready_timeout=120,
    ).start()


def _inpaint_records(server: ServerProcess, record: Path, nodes: int) -> list[str]:
    """Once ``nodes`` local nodes registered, one ``/inpaint``; the fields its inference process recorded."""

    def listed() -> list[dict] | None:
        found = requests.get(server.url + "/api/v1/nodes", timeout=10).json()["nodes"]
        return found if len(found) == nodes else None

    wait_for(listed, 60, f"{nodes} local node(s) to register")
    files = {"image": ("i.png", png(), "image/png"), "mask": ("m.png", mask_png(), "image/png")}
    reply = requests.post(server.url + "/inpaint", data=task_form(), files=files, timeout=120)
    assert reply.status_code == 200, reply.text
    return record.read_text().rstrip("\n").split(" ")


def test_a_servers_local_nodes_wait_passively_when_they_share_its_host(tmp_path: Path):
    """``--local-nodes 2``: OpenMP threads that sleep when idle in every node's inference process, so two
    nodes running a model at once do not spin on each other's cores; the thread count is left alone."""
    record = tmp_path / "threads.txt"
    env = {"LAMA_TEST_THREADS_FILE": str(record), "OMP_NUM_THREADS": ""}
    server = _local_nodes_server(tmp_path, record, 2, env)
    try:
        omp, _opencv, _torch, policy = _inpaint_records(server, record, 2)
        assert (omp, policy) == ("", "PASSIVE")
        assert "OMP_WAIT_POLICY=PASSIVE" in server.output()
    finally:
        server.stop()


def test_the_operators_wait_policy_and_a_lone_local_node_are_left_alone(tmp_path: Path):
    record = tmp_path / "threads.txt"
    env = {"LAMA_TEST_THREADS_FILE": str(record), "OMP_WAIT_POLICY": "ACTIVE"}
    server = _local_nodes_server(tmp_path / "two", record, 2, env)
    try:
        assert _inpaint_records(server, record, 2)[3] == "ACTIVE"
    finally:
        server.stop()
    record.unlink()
    server = _local_nodes_server(tmp_path / "one", record, 1, {"LAMA_TEST_THREADS_FILE": str(record)})
    try:
        # One node: nothing to share, so the policy is whatever this test run's environment has.
        assert _inpaint_records(server, record, 1)[3] == str(os.environ.get("OMP_WAIT_POLICY"))
    finally:
        server.stop()
