"""A real ``lama-cleaner node`` hands the malloc thresholds to its inference process (malloc_tuning):
without them every cv2 task re-faults ~17 MB of freed buffers (6-7 ms of a 90 ms task)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lama_cleaner.plugins.distributed import malloc_tuning
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(x) for x in (task / "children").read_text().split()]
    return found


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_the_inference_process_starts_with_the_malloc_thresholds(scheduler_factory):
    sched = scheduler_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != malloc_tuning.DISABLE_ENV}
    env.update(PYTHONPATH=str(REPO_ROOT), LAMA_CLEANER_DISABLE_PLUGIN_AUTOLOAD="1")
    node = subprocess.Popen(
        [sys.executable, "-m", "lama_cleaner", "node", "--scheduler", sched.control_endpoint, "--queues", "cpu",
         "--device", "cpu", "--log-level", "WARNING"],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: sched.stats()["nodes"].get("idle"), timeout=60, message="node registered and idle")
        child = wait_for(lambda: children(node.pid), timeout=10, message="inference process")[0]
        got = environ(child)
        for name, _param, value in malloc_tuning.SETTINGS:
            assert got.get(name) == str(value), name
    finally:
        node.terminate()
        node.wait(20)
