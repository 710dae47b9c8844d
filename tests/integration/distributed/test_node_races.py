"""The real node process against a scripted scheduler: messages that cross on different sockets.

CANCEL travels on the control socket and TASK on a queue socket, so a CANCEL can overtake its TASK;
a stop or drain can cross a TASK the scheduler sent while it still believed the node idle. Neither
may make the node run work nobody wants, nor cost the task an attempt.
"""

from __future__ import annotations

import signal
from pathlib import Path

from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import Proc, ScriptedScheduler, handshake, start_node, wait_for


def _count_node(procs: list[Proc], scripted: ScriptedScheduler, config: Path, count_file: Path, *extra: str) -> Proc:
    """A node whose ``count`` model appends its marker to ``count_file`` each time it really runs."""
    return start_node(procs, scripted.endpoint, config, *extra, env={"LAMA_TEST_COUNT_FILE": str(count_file)})


def _runs(count_file: Path) -> list[str]:
    return count_file.read_text().split() if count_file.exists() else []


def test_a_cancel_that_overtakes_its_task_is_answered_without_running_it(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    count_file = tmp_path / "runs.txt"
    node = _count_node(procs, scripted, tmp_config, count_file)
    ident, qident, _ = handshake(scripted)
    scripted.send("control", ident, p.CANCEL, {"task_id": "early", "attempt": 1})
    # The node logs the CANCEL it could not match: only then is the TASK sent, so it really comes second.
    wait_for(lambda: "cancel early (attempt 1): not held here" in node.output(), 10, "the CANCEL to be handled")
    scripted.send_task(qident, "early", "count", "early")
    _, _, outcome = scripted.recv(10, [p.CANCELLED, p.RESULT, p.FAILED])
    assert (outcome.command, outcome.header["task_id"], outcome.header["attempt"]) == (p.CANCELLED, "early", 1)
    assert outcome.header.get("ready", True) is True  # idle with a ready child: it is a credit
    scripted.recv(10, [p.READY])
    # The node is idle and healthy: the next task runs, and it is the only one the model ever saw.
    scripted.send_task(qident, "after", "count", "after")
    _, _, result = scripted.recv(30, [p.RESULT, p.CANCELLED, p.FAILED])
    assert (result.command, result.header["task_id"]) == (p.RESULT, "after")
    assert _runs(count_file) == ["after"]


def test_a_remembered_cancel_only_matches_its_own_attempt(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    """Attempt numbers are never reused, so a CANCEL for attempt 1 must not stop a later attempt 2."""
    count_file = tmp_path / "runs.txt"
    node = _count_node(procs, scripted, tmp_config, count_file)
    ident, qident, _ = handshake(scripted)
    scripted.send("control", ident, p.CANCEL, {"task_id": "t", "attempt": 1})
    wait_for(lambda: "cancel t (attempt 1): not held here" in node.output(), 10, "the CANCEL to be handled")
    scripted.send_task(qident, "t", "count", "second-attempt", attempt=2)
    _, _, outcome = scripted.recv(30, [p.CANCELLED, p.RESULT, p.FAILED])
    assert (outcome.command, outcome.header["attempt"]) == (p.RESULT, 2)
    assert _runs(count_file) == ["second-attempt"]


def test_a_draining_node_hands_a_task_back_without_running_it(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    count_file = tmp_path / "runs.txt"
    _count_node(procs, scripted, tmp_config, count_file)
    ident, qident, _ = handshake(scripted)
    scripted.send("control", ident, p.DRAIN, {})
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header["state"] == "draining", 10, "a draining heartbeat")
    scripted.send_task(qident, "raced", "count", "raced")  # sent before the scheduler heard of the drain
    _, _, failed = scripted.recv(10, [p.FAILED, p.RESULT, p.CANCELLED])
    assert failed.command == p.FAILED and failed.header["task_id"] == "raced"
    # Explicitly a hand-back (re-queued uncharged) and no credit: the node takes no more work.
    assert failed.header["handed_back"] is True and failed.header["ready"] is False
    assert failed.header["retryable"] is True
    assert _runs(count_file) == []


def test_a_stopping_node_announces_it_hands_back_a_racing_task_and_says_what_it_held(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path, tmp_path: Path
):
    count_file = tmp_path / "runs.txt"
    node = _count_node(procs, scripted, tmp_config, count_file, "--stop-grace", "60")
    ident, qident, _ = handshake(scripted)
    scripted.send_task(qident, "long", "count", "1500 long")
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header.get("task_id") == "long", 30, "node busy with long")
    node.kill(signal.SIGTERM)  # stop taking work, finish "long" first
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header["state"] == "draining", 10, "the stop to be announced")
    scripted.send_task(qident, "raced", "count", "raced")
    _, _, failed = scripted.recv(10, [p.FAILED])
    assert failed.header["task_id"] == "raced"
    assert failed.header["handed_back"] is True and failed.header["ready"] is False
    _, _, result = scripted.recv(30, [p.RESULT])
    assert result.header["task_id"] == "long"
    assert result.header["ready"] is False  # stopping: the outcome is no credit
    _, _, bye = scripted.recv(10, [p.BYE])
    assert bye.header["task_id"] is None  # it holds nothing: a TASK still in flight never started
    wait_for(lambda: not node.alive(), 10, "node to exit")
    assert _runs(count_file) == ["long"]
