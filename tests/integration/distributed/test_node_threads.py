"""Nodes sharing a host share its cores (``lama_cleaner.cpu_threads``): the real node process and its
inference child against a scripted scheduler, and a real server's local nodes.

What is checked is what the math libraries of the process that runs the model were told, recorded by
the ``threads`` fake model from inside that process: ``OMP_NUM_THREADS`` (what PyTorch, MKL and
OpenBLAS read when they start), OpenCV's thread count and PyTorch's (imported there on the task).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import requests

from lama_cleaner.cpu_threads import host_cpus
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


def _expected(threads: int) -> str:
    return f"{threads} {threads} {threads if HAS_TORCH else '-'}"


def _run_threads_task(scripted: ScriptedScheduler, qident: bytes, record: Path) -> str:
    """One ``threads`` task on the node; the line its inference process recorded."""
    header = {"task_id": "t1", "attempt": 1, "kind": "inpaint", "name": "threads", "form": task_form()}
    scripted.send("queue", qident, p.TASK, header | {"submitter": None}, {"image": png(), "mask": mask_png()})
    _, _, result = scripted.recv(120, [p.RESULT, p.FAILED])
    assert result.command == p.RESULT, result.header
    return record.read_text().rstrip("\n")


def test_node_threads_flag_limits_the_inference_process(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """``--threads 1``: HELLO says so and the process that runs the model uses one thread in OpenMP,
    OpenCV and PyTorch, even though the operator's environment asked for three."""
    record = tmp_path / "threads.txt"
    env = {"LAMA_TEST_THREADS_FILE": str(record), "OMP_NUM_THREADS": "3"}
    start_node(procs, scripted.endpoint, tmp_config, "--models", "threads", "--threads", "1", env=env)
    _, ident, hello = scripted.recv(60, [p.HELLO])
    assert hello.header["capabilities"]["threads"] == 1
    scripted.welcome(ident, hello.header["node_id"])
    _, qident, _ = scripted.recv(60, [p.READY])
    assert _run_threads_task(scripted, qident, record) == _expected(1)
    assert "1 thread(s)" in procs[0].output()


def test_without_a_setting_the_operators_omp_num_threads_wins(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """(One thread: PyTorch never starts more threads than there are cores, whatever the variable says.)"""
    record = tmp_path / "threads.txt"
    env = {"LAMA_TEST_THREADS_FILE": str(record), "OMP_NUM_THREADS": "1"}
    start_node(procs, scripted.endpoint, tmp_config, "--models", "threads", env=env)
    _, qident, _ = handshake(scripted)
    assert _run_threads_task(scripted, qident, record) == _expected(1)


def test_a_node_alone_leaves_the_libraries_their_defaults(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """No setting, no ``OMP_NUM_THREADS``: the node is the host's only one (as a node per GPU box is),
    so nothing is imposed; PyTorch's own default (the physical cores) beats any count of logical ones."""
    record = tmp_path / "threads.txt"
    start_node(procs, scripted.endpoint, tmp_config, "--models", "threads", env=_without_omp(record))
    _, ident, hello = scripted.recv(60, [p.HELLO])
    assert hello.header["capabilities"]["threads"] is None
    scripted.welcome(ident, hello.header["node_id"])
    _, qident, _ = scripted.recv(60, [p.READY])
    omp, opencv, _torch = _run_threads_task(scripted, qident, record).split(" ")
    assert omp == "" and int(opencv) >= 1  # the variable is left as it was (empty)
    assert "the math libraries' default threads" in procs[0].output()


def _without_omp(record: Path) -> dict[str, str]:
    # An empty value counts as unset (as OpenMP itself treats it).
    return {"LAMA_TEST_THREADS_FILE": str(record), "OMP_NUM_THREADS": ""}


def test_a_servers_local_nodes_share_its_cores(tmp_path: Path):
    """``--local-nodes 2``: each node gets half the cores (at least one), reported in ``/api/v1/nodes``,
    and the task's inference process runs with that many threads."""
    record = tmp_path / "threads.txt"
    config = write_config(tmp_path, merged(FAST, {"distributed": {"data_dir": str(tmp_path / "journal")}}))
    server = ServerProcess(
        ["--plugins", f"distributed,{FAKE_PLUGIN}", "--config", str(config), "--local-nodes", "2"],
        env=_without_omp(record),
        model="threads",
        ready_timeout=120,
    ).start()
    try:
        share = max(1, host_cpus() // 2)

        def nodes() -> list[dict] | None:
            found = requests.get(server.url + "/api/v1/nodes", timeout=10).json()["nodes"]
            return found if len(found) == 2 else None

        listed = wait_for(nodes, 60, "both local nodes to register")
        assert [n["capabilities"]["threads"] for n in listed] == [share, share]
        form = task_form()
        files = {"image": ("i.png", png(), "image/png"), "mask": ("m.png", mask_png(), "image/png")}
        reply = requests.post(server.url + "/inpaint", data=form, files=files, timeout=120)
        assert reply.status_code == 200, reply.text
        assert record.read_text().rstrip("\n") == _expected(share)
    finally:
        server.stop()
