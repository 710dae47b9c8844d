"""The real node process against a scripted scheduler: registration, credit, results, cancellation,
heartbeats during inference, reconnects and parent death."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import numpy as np

from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import Proc, ScriptedScheduler, handshake, mask_png, png, start_node, task_form, wait_for


def test_registers_capabilities_and_pulls_one_task_at_a_time(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    start_node(procs, scripted.endpoint, tmp_config, "--name", "n1", "--labels", "zone=lab,tier=a")
    _, ident, hello = scripted.recv(60, [p.HELLO])
    caps = hello.header["capabilities"]
    assert hello.header["name"] == "n1"
    assert caps["device"] == "cpu" and caps["gpu_name"] is None
    assert caps["cpus"] >= 1 and caps["ram_mb"] > 0
    assert {"cv2", "sleep", "steps", "block", "count", "gpu_sleep"} <= set(caps["models"])
    assert caps["labels"] == {"zone": "lab", "tier": "a"}
    node_id = hello.header["node_id"]
    scripted.welcome(ident, node_id)
    _, qident, _ = scripted.recv(30, [p.READY])

    scripted.send_task(qident, "t1", "sleep", "50")
    _, _, result = scripted.recv(60, [p.RESULT, p.FAILED])
    assert result.command == p.RESULT, result.header
    assert result.header["task_id"] == "t1" and result.header["attempt"] == 1
    assert result.header["mimetype"] == "image/png"
    decoded = cv2.imdecode(np.frombuffer(result.blob_map()["body"], np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, cv2.imdecode(np.frombuffer(png(), np.uint8), cv2.IMREAD_COLOR))
    # Exactly one new credit once idle again.
    where, _, ready = scripted.recv(10, [p.READY])
    assert where == "queue" and ready.header["node_id"] == node_id


def test_bad_input_is_a_final_failure(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    start_node(procs, scripted.endpoint, tmp_config)
    _, qident, _ = handshake(scripted)
    scripted.send(
        "queue",
        qident,
        p.TASK,
        {
            "task_id": "bad",
            "attempt": 1,
            "kind": "inpaint",
            "name": "cv2",
            "form": {},
            "submitter": None,
        },
        {"image": png(), "mask": png()},
    )
    _, _, failed = scripted.recv(60, [p.FAILED, p.RESULT])
    assert failed.command == p.FAILED
    assert failed.header["retryable"] is False and failed.header["status"] == 400
    assert "Missing form field" in failed.header["error"]


def test_heartbeats_continue_during_an_uninterruptible_model_call(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, node_id = handshake(scripted)
    scripted.send_task(qident, "long", "block", "20000")
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header["state"] == "busy", 30, "a busy heartbeat")
    start = time.monotonic()
    beats = 0
    while time.monotonic() - start < 1.5:
        scripted.recv(2, [p.HEARTBEAT])
        beats += 1
    assert beats >= 4  # 0.2 s interval (about 7 expected): the blocked child does not starve the node's loop


def test_cancel_kills_an_uninterruptible_model_and_node_becomes_idle(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, node_id = handshake(scripted)
    scripted.send_task(qident, "blk", "block", "60000")
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header.get("task_id") == "blk", 30, "node busy with blk")
    sent = time.monotonic()
    scripted.send("control", ident, p.CANCEL, {"task_id": "blk", "attempt": 1})
    _, _, cancelled = scripted.recv(10, [p.CANCELLED])
    assert cancelled.header["task_id"] == "blk"
    # CANCELLED waits for the fresh inference process (a few hundred ms; 5 s leaves room for a busy CI).
    assert time.monotonic() - sent < 5.0
    scripted.recv(10, [p.READY])  # sent together with CANCELLED: the new process is already up
    scripted.send_task(qident, "after", "sleep", "10")
    _, _, result = scripted.recv(60, [p.RESULT])
    assert result.header["task_id"] == "after"


def test_cancel_stops_a_stepping_model_at_a_step_boundary(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, _ = handshake(scripted)
    scripted.send_task(qident, "st", "steps", "steps=500 100")
    _, _, progress = scripted.recv(60, [p.PROGRESS])
    assert progress.header["task_id"] == "st" and progress.header["total_steps"] == 500
    assert progress.header["step"] == 0
    scripted.send("control", ident, p.CANCEL, {"task_id": "st", "attempt": 1})
    _, _, cancelled = scripted.recv(5, [p.CANCELLED])
    assert cancelled.header["task_id"] == "st"
    scripted.recv(5, [p.READY])


def test_the_next_task_after_a_step_cancel_is_not_cancelled(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    """A cooperative cancel keeps the inference child, and its cancel Event must not leak into the
    child's next task (the node clears it only after a CANCEL set it)."""
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, _ = handshake(scripted)
    scripted.send_task(qident, "st", "steps", "steps=500 100")
    scripted.recv(60, [p.PROGRESS])
    scripted.send("control", ident, p.CANCEL, {"task_id": "st", "attempt": 1})
    scripted.recv(10, [p.CANCELLED])
    scripted.recv(10, [p.READY])
    for task_id in ("next1", "next2"):
        scripted.send_task(qident, task_id, "steps", "steps=3 1")
        _, _, outcome = scripted.recv(30, [p.RESULT, p.CANCELLED, p.FAILED])
        assert (outcome.command, outcome.header["task_id"]) == (p.RESULT, task_id)
        scripted.recv(10, [p.READY])


def test_a_burst_of_control_messages_is_handled_in_order(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    """Messages that queue up on a socket are read one per loop turn: none is lost or reordered."""
    node = start_node(procs, scripted.endpoint, tmp_config, "--exit-on-drain")
    ident, _, _ = handshake(scripted)
    for _ in range(20):
        scripted.send("control", ident, p.HEARTBEAT, {})
    scripted.send("control", ident, p.DRAIN, {})
    _, _, bye = scripted.recv(10, [p.BYE])
    assert bye.header["reason"] == "drained"
    wait_for(lambda: not node.alive(), 10, "node to exit after drain")


def test_reconnects_with_a_new_hello_when_the_scheduler_goes_silent(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, node_id = handshake(scripted)
    scripted.answer_heartbeats = False
    # Say nothing: after 3 missed heartbeats (0.6 s) the node recreates its socket and says HELLO again.
    _, ident2, hello = scripted.recv(10, [p.HELLO])
    assert hello.header["node_id"] == node_id
    assert ident2 != ident


def test_resends_a_result_finished_while_disconnected(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, qident, node_id = handshake(scripted)
    scripted.send_task(qident, "r1", "sleep", "3000")
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header.get("task_id") == "r1", 30, "node busy with r1")
    scripted.unbind()  # the scheduler disappears while the task runs ...
    scripted.bind()  # ... and comes back, silent until the node introduces itself again
    scripted.answer_heartbeats = False
    _, ident2, hello = scripted.recv(20, [p.HELLO])
    scripted.answer_heartbeats = True
    assert hello.header["task_id"] == "r1"  # it tells the new scheduler what it is still running
    scripted.welcome(ident2, node_id)
    while True:
        _, ident2, msg = scripted.recv(20, [p.HELLO, p.RESULT])
        if msg.command == p.RESULT:
            break
        scripted.welcome(ident2, node_id)
    assert msg.header["task_id"] == "r1"


def test_unknown_makes_the_node_say_hello_again(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    start_node(procs, scripted.endpoint, tmp_config)
    ident, _, node_id = handshake(scripted)
    scripted.send("control", ident, p.UNKNOWN, {"reason": "scheduler restarted"})
    _, _, hello = scripted.recv(10, [p.HELLO])
    assert hello.header["node_id"] == node_id


def test_drain_with_exit_on_drain_says_bye_and_exits(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    node = start_node(procs, scripted.endpoint, tmp_config, "--exit-on-drain")
    ident, qident, _ = handshake(scripted)
    scripted.send_task(qident, "d1", "sleep", "300")
    wait_for(lambda: scripted.recv(5, [p.HEARTBEAT])[2].header.get("task_id") == "d1", 30, "node busy with d1")
    scripted.send("control", ident, p.DRAIN, {})
    _, _, result = scripted.recv(30, [p.RESULT])  # the current task still finishes
    assert result.header["task_id"] == "d1"
    _, _, bye = scripted.recv(10, [p.BYE, p.READY])
    assert bye.command == p.BYE
    wait_for(lambda: not node.alive(), 10, "node to exit after drain")
    assert node.proc.returncode == 0


def test_node_exits_when_its_parent_dies(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        node = start_node(procs, scripted.endpoint, tmp_config, "--parent-pid", str(parent.pid))
        handshake(scripted)
        parent.kill()
        parent.wait()
        wait_for(lambda: not node.alive(), 10, "node to exit after its parent died")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_sigterm_says_bye(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    node = start_node(procs, scripted.endpoint, tmp_config)
    handshake(scripted)
    node.proc.terminate()
    _, _, bye = scripted.recv(10, [p.BYE])
    assert bye.header["reason"] == "shutdown"
    wait_for(lambda: not node.alive(), 10, "node to exit")


def _quiet_handshake(sched: ScriptedScheduler, interval: float = 60.0) -> tuple[bytes, bytes, str]:
    """HELLO -> WELCOME with a long heartbeat interval -> READY, then wait until the heartbeats of the
    start-up (before the node adopted ``interval``) have stopped, so later messages are the task's
    (the next periodic one is a minute away, however slow a loaded machine makes the test)."""
    _, ident, hello = sched.recv(60, [p.HELLO])
    node_id = hello.header["node_id"]
    sched.welcome(ident, node_id, interval=interval)
    _, qident, _ = sched.recv(60, [p.READY])

    def heartbeats_stopped() -> bool:
        try:
            sched.recv(1.0, [p.HEARTBEAT])
        except AssertionError:
            return True  # a whole second without one: the long interval is in force
        return False

    wait_for(heartbeats_stopped, 10, "the start-up heartbeats to stop")
    return ident, qident, node_id


def _task_messages(sched: ScriptedScheduler, timeout: float = 30.0) -> tuple[list[str], list[str]]:
    """Every command the node sends for one task (heartbeats included), per socket: the control
    socket's up to the task's outcome, the queue socket's up to its next READY.

    The node sends the outcome first, but on another socket (another TCP connection) than the READY,
    so which of the two reaches this process first is not defined; each socket's own order is."""
    seen: dict[str, list[str]] = {"control": [], "queue": []}
    while not (seen["control"][-1:] in ([p.RESULT], [p.FAILED]) and p.READY in seen["queue"]):
        where, _, msg = sched.recv(timeout)
        seen[where].append(msg.command)
    return seen["control"], seen["queue"]


def test_a_task_costs_two_messages_result_and_ready(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    """No HEARTBEAT around a task (any message is a sign of life; the periodic one goes on) and no
    PROGRESS at 100 % without a step (the RESULT says more): RESULT + READY is all a task costs."""
    start_node(procs, scripted.endpoint, tmp_config)
    _, qident, _ = _quiet_handshake(scripted)
    for i in range(3):
        scripted.send_task(qident, f"q{i}", "sleep", "0")
        assert _task_messages(scripted) == ([p.RESULT], [p.READY])


def test_a_stepping_model_still_reports_every_step(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    start_node(procs, scripted.endpoint, tmp_config)
    _, qident, _ = _quiet_handshake(scripted)
    scripted.send_task(qident, "s3", "steps", "steps=3 1")
    steps: list[int] = []
    control: list[str] = []
    while control[-1:] != [p.RESULT]:
        msg = scripted.recv(30, [p.PROGRESS, p.RESULT, p.HEARTBEAT])[2]
        control.append(msg.command)
        if msg.command == p.PROGRESS:
            steps.append(msg.header["step"])
    assert control == [p.PROGRESS] * 3 + [p.RESULT]
    assert steps == [0, 1, 2]
    assert scripted.recv(30)[2].command == p.READY  # nothing else on either socket before it


def test_megabyte_images_cross_the_inference_pipe_intact(scripted: ScriptedScheduler, procs: list[Proc], tmp_config):
    """Both directions of the Pipe to the inference child carry MB-sized blobs (large socket buffers)."""
    start_node(procs, scripted.endpoint, tmp_config)
    _, qident, _ = handshake(scripted)
    big = png(1024, 768, seed=7)
    assert len(big) > 2_000_000
    scripted.send(
        "queue",
        qident,
        p.TASK,
        {
            "task_id": "big",
            "attempt": 1,
            "kind": "inpaint",
            "name": "sleep",
            "form": task_form("0"),
            "submitter": None,
        },
        {"image": big, "mask": mask_png(1024, 768)},
    )
    _, _, result = scripted.recv(60, [p.RESULT, p.FAILED])
    assert result.command == p.RESULT, result.header
    body = result.blob_map()["body"]
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, cv2.imdecode(np.frombuffer(big, np.uint8), cv2.IMREAD_COLOR))


def test_a_scheduler_of_another_protocol_version_makes_the_node_exit_with_its_reason(
    scripted: ScriptedScheduler, procs: list[Proc], tmp_config
):
    """During a rolling upgrade the scheduler may speak LC2: its ERROR is still read (the one shape
    every version keeps), so the node exits with code 2 and the reason instead of retrying forever."""
    node = start_node(procs, scripted.endpoint, tmp_config)
    _, ident, _ = scripted.recv(60, [p.HELLO])
    header = {"code": p.ERR_VERSION, "message": "this scheduler speaks LC2 only"}
    assert scripted.control is not None
    scripted.control.send_multipart([ident, b"LC2", p.ERROR.encode(), json.dumps(header).encode()])
    wait_for(lambda: not node.alive(), 30, "the node to exit")
    assert node.proc.returncode == 2
    assert "this scheduler speaks LC2 only" in node.output()
