"""The ``startup``/``shutdown`` hooks around the ``serve`` and ``batch`` roles, in real processes.

A recording plugin writes one line per hook call to a file; the process is then stopped the way an
operator stops it (SIGTERM), or fails to start, and the file says what ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.support.server_process import REPO_ROOT, server_env

from .media_helpers import image_bytes, mask_bytes

PLUGINS = "tests.support.lifecycle_recorder,tests.support.legacy_shutdown"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_serve_runs_startup_then_shutdown_on_sigterm(server_factory, tmp_path):
    log = tmp_path / "lifecycle.log"
    server = server_factory("--plugins", PLUGINS, env={"LAMA_TEST_LIFECYCLE_FILE": str(log)})
    assert requests.get(server.url + "/model", timeout=30).text == "cv2"
    assert lines(log) == ["startup serve"], "startup runs once, before the server answers"
    assert server.stop() == 0, server.output()[-2000:]
    recorded = lines(log)
    assert recorded[0] == "startup serve"
    assert sorted(recorded[1:]) == ["legacy-shutdown", "shutdown serve"], recorded


def test_a_refused_startup_stops_serve_in_one_line_and_still_shuts_down(tmp_path):
    log = tmp_path / "lifecycle.log"
    env = server_env({"LAMA_TEST_LIFECYCLE_FILE": str(log), "LAMA_TEST_LIFECYCLE_FAIL": "startup"})
    argv = ["--model", "cv2", "--device", "cpu", "--port", "1", "--plugins", PLUGINS]
    result = subprocess.run([sys.executable, "-m", "lama_cleaner", *argv], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "lama-cleaner: error: the lifecycle recorder refuses to start" in result.stderr
    assert "Traceback" not in result.stderr
    recorded = lines(log)
    assert recorded[0] == "startup serve" and sorted(recorded[1:]) == ["legacy-shutdown", "shutdown serve"]


def test_batch_runs_the_batch_role(tmp_path):
    """Every output already exists, so the batch finishes without starting a server, inside the role."""
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    out.mkdir()
    (images / "a.png").write_bytes(image_bytes(32, 24))
    (out / "a.png").write_bytes(image_bytes(32, 24))
    mask = tmp_path / "mask.png"
    mask.write_bytes(mask_bytes(32, 24))
    log = tmp_path / "lifecycle.log"
    result = subprocess.run(
        [sys.executable, "-m", "lama_cleaner", "batch", "--input", str(images), "--mask", str(mask),
         "--output", str(out), "--plugins", PLUGINS, "--quiet"],
        cwd=REPO_ROOT, env=server_env({"LAMA_TEST_LIFECYCLE_FILE": str(log)}), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "skipped: 1" in result.stdout
    recorded = lines(log)
    assert recorded[0] == "startup batch" and sorted(recorded[1:]) == ["legacy-shutdown", "shutdown batch"], recorded
