"""A node with ``--pipeline-depth 2``: a real web server with its embedded scheduler and SQLite
journal, and node subprocesses over TCP loopback.

The node holds two tasks at once; while the model runs one, the other is decoded (the probe model's
record shows a decode inside a model call, and never two model calls at once). Losing the node
(SIGKILL) re-queues both of its tasks, and each completes exactly once elsewhere. Cancelling one of
two held tasks, whether its model stops at a step or its inference process must be killed, leaves
the other delivered exactly once without an extra attempt charged; cancelling the task that waits
for the device while an uninterruptible model runs the other stops it there, without killing the
inference process. A drained depth-2 node finishes both tasks it holds and takes no more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.support.distributed_config import FAKE_PLUGIN, FAST
from tests.support.waiting import wait_for

from .conftest import DistServer, Proc, api_nodes, api_submit, api_task, merged, start_node, wait_status, write_config

PROBE_PLUGINS = f"{FAKE_PLUGIN},tests.support.pipeline_probe"
DONE = ["completed", "failed", "cancelled"]


def _config(tmp_path: Path, max_attempts: int) -> Path:
    retry = {"inpaint": {"max_attempts": max_attempts, "backoff_base_s": 0.05, "backoff_max_s": 0.2}}
    return write_config(tmp_path, merged(FAST, {"distributed": {"retry": retry}}))


def _cluster(tmp_path: Path, servers: list[DistServer], *, max_attempts: int = 1) -> tuple[DistServer, Path]:
    config = _config(tmp_path, max_attempts)
    dist = DistServer(tmp_path / "data", config, local_nodes=0)
    servers.append(dist.start())
    return dist, config


def _deep_node(procs: list[Proc], dist: DistServer, config: Path, env: dict[str, str]) -> Proc:
    return start_node(procs, dist.scheduler, config, "--pipeline-depth", "2", "--plugins", PROBE_PLUGINS, env=env)


def _holding(url: str, count: int, timeout: float = 30.0) -> dict:
    """Wait until one node holds ``count`` tasks at once; that node."""

    def held() -> dict | None:
        return next((n for n in api_nodes(url) if len(n.get("tasks") or []) >= count), None)

    return wait_for(held, timeout, f"a node holding {count} tasks")


def _wait_node_slots(url: str, slots: int, timeout: float = 60.0) -> dict:
    def online() -> dict | None:
        return next((n for n in api_nodes(url) if n["state"] == "idle" and n.get("slots") == slots), None)

    return wait_for(online, timeout, f"an idle node with {slots} slots")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_a_depth_2_node_decodes_the_next_task_while_the_model_runs(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    record = tmp_path / "pipe.log"
    dist, config = _cluster(tmp_path, servers)
    _deep_node(procs, dist, config, {"LAMA_TEST_PIPE_FILE": str(record)})
    _wait_node_slots(dist.url, 2)
    tasks = [api_submit(dist.url, "probe-pipe", f"600 t{i}") for i in range(4)]
    _holding(dist.url, 2)
    for task in tasks:
        done = wait_status(dist.url, task["id"], DONE, 60)
        assert done["status"] == "completed" and done["attempts"] == 1, done

    events = [line.split() for line in _lines(record)]
    model = [(float(t), e) for e, _, t in events if e.startswith("model-")]
    assert len([e for _, e in model if e == "model-start"]) == 4
    depth, deepest = 0, 0
    for _, event in sorted(model):
        depth += 1 if event == "model-start" else -1
        deepest = max(deepest, depth)
    assert deepest == 1, f"the model was entered twice at once: {events}"
    starts = sorted(t for t, e in model if e == "model-start")
    ends = sorted(t for t, e in model if e == "model-end")
    calls = list(zip(starts, ends, strict=True))
    decodes = [float(t) for e, _, t in events if e == "decode-start"]
    inside = [d for d in decodes if any(s < d < e for s, e in calls)]
    assert inside, f"no task was decoded while the model ran another: {events}"


@pytest.mark.slow
def test_sigkill_of_a_depth_2_node_requeues_both_tasks_and_each_completes_once(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    counted = tmp_path / "count.log"
    env = {"LAMA_TEST_COUNT_FILE": str(counted)}
    dist, config = _cluster(tmp_path, servers, max_attempts=3)
    doomed = _deep_node(procs, dist, config, env)
    _wait_node_slots(dist.url, 2)
    tasks = [api_submit(dist.url, "count", f"3000 k{i}") for i in range(2)]
    node = _holding(dist.url, 2)
    doomed.kill()
    wait_for(lambda: any(n["id"] == node["id"] and n["state"] == "offline" for n in api_nodes(dist.url)), 30, "offline")
    _deep_node(procs, dist, config, env)
    for task in tasks:
        done = wait_status(dist.url, task["id"], DONE, 60)
        assert done["status"] == "completed" and done["attempts"] == 2, done
    assert sorted(_lines(counted)) == ["k0", "k1"]  # each model run finished exactly once


@pytest.mark.slow
@pytest.mark.parametrize("model", ["steps", "block"])
def test_cancelling_one_of_two_held_tasks_delivers_the_other_once_uncharged(
    model: str, tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    """``steps`` stops at its next step; ``block`` can only be stopped by killing the inference
    process, which hands the other task back. ``max_attempts = 1``: a charged extra attempt fails it."""
    counted = tmp_path / "count.log"
    dist, config = _cluster(tmp_path, servers, max_attempts=1)
    _deep_node(procs, dist, config, {"LAMA_TEST_COUNT_FILE": str(counted)})
    _wait_node_slots(dist.url, 2)
    doomed = api_submit(dist.url, model, "steps=600 100" if model == "steps" else "60000")
    wait_status(dist.url, doomed["id"], ["processing"], 30)
    other = api_submit(dist.url, "count", "1000 other")
    _holding(dist.url, 2)
    assert requests.delete(f"{dist.url}/api/v1/tasks/{doomed['id']}", timeout=10).status_code == 200
    done = wait_status(dist.url, other["id"], DONE, 60)
    assert done["status"] == "completed" and done["attempts"] == 1, done
    assert wait_status(dist.url, doomed["id"], DONE, 10)["status"] == "cancelled"
    assert _lines(counted) == ["other"]
    # The node is usable afterwards: its slots came back.
    again = api_submit(dist.url, "count", "10 after")
    assert wait_status(dist.url, again["id"], DONE, 60)["status"] == "completed"


@pytest.mark.slow
def test_cancelling_the_task_waiting_for_the_device_keeps_the_inference_process(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    """``count`` cannot be interrupted: killing the process was the only way to stop a task inside it.
    The cancelled task here waits for the device while the other runs, so it leaves by itself: the
    other finishes in the same process (no hand-back), and the waiting one never runs."""
    counted, started = tmp_path / "count.log", tmp_path / "started.log"
    dist, config = _cluster(tmp_path, servers, max_attempts=1)
    env = {"LAMA_TEST_COUNT_FILE": str(counted), "LAMA_TEST_COUNT_START_FILE": str(started)}
    node = _deep_node(procs, dist, config, env)
    _wait_node_slots(dist.url, 2)
    running = api_submit(dist.url, "count", "2500 running")
    # Inside the model call, holding the device: only then is the next task sure to wait for it (both
    # dispatched together, either could get the device first, and the cancel would then kill the process).
    wait_for(lambda: _lines(started) == ["running"], 30, "the first task to be in the model call")
    waiting = api_submit(dist.url, "count", "10 waiting")
    _holding(dist.url, 2)
    assert requests.delete(f"{dist.url}/api/v1/tasks/{waiting['id']}", timeout=10).status_code == 200
    assert wait_status(dist.url, waiting["id"], DONE, 10)["status"] == "cancelled"
    assert api_task(dist.url, running["id"])["status"] == "processing", "the other task runs on"
    done = wait_status(dist.url, running["id"], DONE, 60)
    assert done["status"] == "completed" and done["attempts"] == 1, done
    assert _lines(counted) == ["running"] and _lines(started) == ["running"], "the cancelled task never ran"
    log = node.output()
    assert "asked the inference process where the task is" in log, log
    assert "terminating the inference process" not in log and "handing it back" not in log, log


@pytest.mark.slow
def test_a_drained_depth_2_node_finishes_both_tasks_and_takes_no_more(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    counted = tmp_path / "count.log"
    dist, config = _cluster(tmp_path, servers)
    _deep_node(procs, dist, config, {"LAMA_TEST_COUNT_FILE": str(counted)})
    _wait_node_slots(dist.url, 2)
    held = [api_submit(dist.url, "count", f"1500 h{i}") for i in range(2)]
    node = _holding(dist.url, 2)
    r = requests.post(f"{dist.url}/api/v1/nodes/{node['id']}/drain", timeout=10)
    assert r.status_code == 202, r.text
    late = api_submit(dist.url, "count", "10 late")
    for task in held:
        done = wait_status(dist.url, task["id"], DONE, 60)
        assert done["status"] == "completed" and done["attempts"] == 1, done

    def drained() -> dict | None:
        n = next(n for n in api_nodes(dist.url) if n["id"] == node["id"])
        return n if n["state"] == "draining" and not n.get("tasks") else None

    wait_for(drained, 30, "the node drained with no task")
    assert wait_status(dist.url, late["id"], ["queued"], 5)["status"] == "queued"
    assert sorted(_lines(counted)) == ["h0", "h1"]
    assert json.loads(json.dumps(api_nodes(dist.url)))  # the node list still serialises


@pytest.mark.slow
def test_a_depth_2_node_replaces_its_inference_process_only_when_it_holds_no_task(
    tmp_path: Path, servers: list[DistServer], procs: list[Proc]
):
    """``--max-tasks-per-child 1``: each child is due after its first task while it may still run the
    other; it gets no new task, is replaced once empty, and no task is lost or charged twice."""
    counted = tmp_path / "count.log"
    dist, config = _cluster(tmp_path, servers, max_attempts=1)
    node = start_node(
        procs,
        dist.scheduler,
        config,
        "--pipeline-depth",
        "2",
        "--max-tasks-per-child",
        "1",
        "--plugins",
        PROBE_PLUGINS,
        env={"LAMA_TEST_COUNT_FILE": str(counted)},
    )
    _wait_node_slots(dist.url, 2)
    tasks = [api_submit(dist.url, "count", f"400 r{i}") for i in range(5)]
    for task in tasks:
        done = wait_status(dist.url, task["id"], DONE, 90)
        assert done["status"] == "completed" and done["attempts"] == 1, done
    assert sorted(_lines(counted)) == [f"r{i}" for i in range(5)]
    assert node.output().count("replacing inference process") >= 2
