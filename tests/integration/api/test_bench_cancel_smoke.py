"""``benchmarks/bench_cancel.py`` runs end to end (one cancel per model) and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server_process import REPO_ROOT, server_env


@pytest.mark.slow
def test_bench_cancel_smoke(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_cancel.py", "--runs", "1", "--results-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cancel -> node idle" in proc.stdout and "stepping (steps)" in proc.stdout
    data = json.loads((tmp_path / "bench_cancel-latest.json").read_text())
    for label in ("stepping", "uninterruptible"):
        assert data[label]["cancel_to_idle_ms"]["n"] == 1 and data[label]["cancel_to_idle_ms"]["p50"] > 0
    assert {t["verdict"] for t in data["targets"]} <= {"PASS", "MISS", "SKIP"}
