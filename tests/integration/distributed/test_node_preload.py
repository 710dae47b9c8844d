"""A node loads the model it offers before it takes work and says so (issue 11, item 2): the real node
process against a scripted scheduler, which never sends it a task."""

from __future__ import annotations

import time
from pathlib import Path

from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import FAST, Proc, ScriptedScheduler, merged, start_node, write_config


def _reported_models(scripted: ScriptedScheduler, seconds: float) -> list[str | None]:
    """``loaded_model`` of every HEARTBEAT within ``seconds`` (the node beats every 0.2 s here)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, _, beat = scripted.recv(30, [p.HEARTBEAT])
        seen.append(beat.header.get("loaded_model"))
    return seen


def _handshake(scripted: ScriptedScheduler) -> p.Message:
    _, ident, hello = scripted.recv(60, [p.HELLO])
    scripted.welcome(ident, hello.header["node_id"])
    scripted.recv(60, [p.READY])  # credit: the inference process is ready, its model loaded
    return hello


def test_a_node_is_warm_before_its_first_task(scripted: ScriptedScheduler, procs: list[Proc], tmp_config: Path):
    start_node(procs, scripted.endpoint, tmp_config, "--models", "cv2,sleep")
    hello = _handshake(scripted)
    assert hello.header["capabilities"]["preload"] == "cv2", "the start-up model comes first when offered"
    # No TASK was ever sent, yet the scheduler hears that cv2 is loaded, so it can route by it.
    assert "cv2" in _reported_models(scripted, 1.0)


def test_node_preload_none_keeps_the_lazy_load(scripted: ScriptedScheduler, procs: list[Proc], tmp_path: Path):
    config = write_config(tmp_path, merged(FAST, {"distributed": {"node_preload": "none"}}))
    start_node(procs, scripted.endpoint, config, "--models", "cv2,sleep")
    hello = _handshake(scripted)
    assert hello.header["capabilities"]["preload"] is None
    assert set(_reported_models(scripted, 1.0)) == {None}
