"""The real node process replaces its inference child between tasks once a limit is reached
(``--max-tasks-per-child``, ``--max-child-rss-mb``), loses no task doing so, and offers no credit
until the new child is ready."""

from __future__ import annotations

from pathlib import Path

from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import Proc, ScriptedScheduler, handshake, start_node, wait_for


def inference_child_pid(node_pid: int) -> int:
    """The pid of the node's only inference process (its child that is not multiprocessing's tracker)."""
    found = []
    for pid in Path(f"/proc/{node_pid}/task/{node_pid}/children").read_text().split():
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            found.append(int(pid))
    assert len(found) == 1, f"expected one inference process, found {found}"
    return found[0]


def _run(scripted: ScriptedScheduler, qident: bytes, task_id: str) -> p.Message:
    """One task, then the node's next READY; returns its RESULT."""
    scripted.send_task(qident, task_id, "sleep", "0")
    _, _, result = scripted.recv(30, [p.RESULT, p.FAILED, p.CANCELLED])
    assert (result.command, result.header["task_id"]) == (p.RESULT, task_id), result.header
    scripted.recv(30, [p.READY])  # only once a child can run the next task
    return result


def test_max_tasks_per_child_replaces_the_child_after_every_n_tasks(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path
):
    node = start_node(procs, scripted.endpoint, tmp_config, "--max-tasks-per-child", "2")
    _, qident, _ = handshake(scripted)
    pids = [inference_child_pid(node.pid)]
    ready_flags = []
    for i in range(5):
        result = _run(scripted, qident, f"t{i}")
        ready_flags.append(result.header.get("ready", True))
        pids.append(inference_child_pid(node.pid))
    first, second, third = pids[0], pids[2], pids[4]
    assert pids == [first, first, second, second, third, third], pids
    assert len({first, second, third}) == 3
    # The task that used up a child's budget says ready: false (no credit until the new child is up).
    assert ready_flags == [True, False, True, False, True]
    assert "ran 2 tasks (limit 2)" in node.output()


def test_max_child_rss_replaces_a_child_over_the_cap(scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path):
    # Any Python process is above 1 MiB resident, so every task ends its child's life.
    node = start_node(procs, scripted.endpoint, tmp_config, "--max-child-rss-mb", "1")
    _, qident, _ = handshake(scripted)
    pids = [inference_child_pid(node.pid)]
    for i in range(2):
        result = _run(scripted, qident, f"r{i}")
        assert result.header["ready"] is False
        pids.append(inference_child_pid(node.pid))
    assert len(set(pids)) == 3, pids
    wait_for(lambda: "MiB over the 1 MiB limit" in node.output(), 5, "the RSS reason in the node's log")


def test_no_limits_keep_one_child(scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path):
    node = start_node(procs, scripted.endpoint, tmp_config)
    _, qident, _ = handshake(scripted)
    before = inference_child_pid(node.pid)
    for i in range(3):
        assert "ready" not in _run(scripted, qident, f"k{i}").header
    assert inference_child_pid(node.pid) == before
