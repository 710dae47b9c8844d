"""The benchmark harness computes the statistics it prints, and bench_distributed --quick runs end to end.

The statistics are checked against values worked out by hand (and numpy's definition of a
percentile, which the harness follows), because a benchmark that mis-computes p95 would report
wrong verdicts with full confidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import (
    PooledRounds,
    ProcessGroup,
    Target,
    format_table,
    percentile,
    rate,
    ratio,
    summarize,
    write_results,
)
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_pooled_rounds_join_latencies_and_sum_walls_per_key_in_first_added_order() -> None:
    pool = PooledRounds()
    pool.add(("b", 8), {"latencies_ms": [10.0, 30.0], "n": 2, "wall_s": 1.0})
    pool.add(("a", 8), {"latencies_ms": [5.0], "n": 1, "wall_s": 0.5})
    pool.add(("b", 8), {"latencies_ms": [20.0, 40.0], "n": 2, "wall_s": 3.0})
    rows = pool.rows(["server", "concurrency"])
    assert [r["server"] for r in rows] == ["b", "a"]
    assert rows[0] == {"server": "b", "concurrency": 8, "n": 4, "p50": 25.0, "p95": pytest.approx(38.5)} | {
        "req_per_s": 1.0
    }
    assert rows[1]["req_per_s"] == 2.0 and rows[1]["n"] == 1
    with pytest.raises(ValueError):
        pool.rows(["server"])  # a field for every part of the key


def test_percentile_matches_hand_computed_values() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 50) == pytest.approx(5.5)
    # rank = 9 * 0.95 = 8.55 -> 9 + 0.55 * (10 - 9)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert percentile([7.0], 95) == 7.0


def test_percentile_agrees_with_numpy_default() -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(7)
    sample = list(rng.exponential(2.0, 257))
    for pct in (1, 25, 50, 90, 95, 99):
        assert percentile(sample, pct) == pytest.approx(float(np.percentile(sample, pct)))


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(2.5)
    assert (s["min"], s["max"]) == (1.0, 4.0)
    assert s["p50"] == pytest.approx(2.5)
    assert s["p95"] == pytest.approx(3.85)


def test_rate_and_ratio() -> None:
    assert rate(500, 0.25) == 2000.0
    with pytest.raises(ValueError):
        rate(1, 0.0)
    assert ratio(10.0, 4.0) == 2.5
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None


def test_target_verdicts() -> None:
    assert Target("t", 5.0, ">=", 5.0).verdict == "PASS"
    assert Target("t", 4.99, ">=", 5.0).verdict == "MISS"
    assert Target("t", 0.2, "<=", 0.2).verdict == "PASS"
    assert Target("t", 0.21, "<=", 0.2).verdict == "MISS"
    assert Target("t", None, ">=", 1.0).verdict == "SKIP"
    assert Target("t", float("nan"), ">=", 1.0).verdict == "SKIP"
    assert Target("t", 1.0, ">=", 1.0).to_json()["verdict"] == "PASS"


def test_target_never_prints_a_miss_as_the_threshold() -> None:
    row = Target("scaling", 0.89996, ">=", 0.9).row()
    assert row["verdict"] == "MISS"
    assert row["measured"] == "0.89996"


def test_format_table_aligns_columns() -> None:
    text = format_table([{"name": "a", "value": 1234.5}, {"name": "bbb", "value": 0.5}], title="T")
    lines = text.splitlines()
    assert lines[0] == "T"
    assert lines[1].split() == ["name", "value"]
    assert lines[3].startswith("a  ") and lines[3].endswith("1,234")
    assert lines[4].startswith("bbb") and lines[4].endswith("0.5")
    assert len({len(line) for line in lines[1:]}) == 1  # right-aligned numbers: equal widths


def test_write_results_writes_stamped_and_latest_json(tmp_path: Path) -> None:
    path = write_results("unit", {"answer": 42}, tmp_path)
    doc = json.loads(path.read_text())
    assert doc["answer"] == 42 and doc["benchmark"] == "unit"
    assert "python" in doc["environment"]
    assert json.loads((tmp_path / "unit-latest.json").read_text()) == doc


def test_process_group_stops_children(tmp_path: Path) -> None:
    with ProcessGroup(tmp_path) as group:
        proc = group.start("sleeper", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
        wait_for(lambda: "up" in (tmp_path / "sleeper.log").read_text(), 20, "the child to start")
        assert group.alive("sleeper")
    assert proc.poll() is not None  # stopped on exit, long before its 60 s


@pytest.mark.slow
def test_bench_distributed_quick_runs_end_to_end(tmp_path: Path) -> None:
    # Its own session, so that a timeout kills the servers and nodes it started too, not only the script
    # (a SIGKILLed script cannot stop its children, which would outlive the test).
    bench = subprocess.Popen(
        [sys.executable, "benchmarks/bench_distributed.py", "--quick", "--results-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        bench.communicate()
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)  # anything of the group still running
    result = subprocess.CompletedProcess(bench.args, bench.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Targets" in result.stdout
    doc = json.loads((tmp_path / "bench_distributed-latest.json").read_text())
    assert doc["mode"] == "quick" and not doc["crashed"]
    assert isinstance(doc["core"]["zmq-lb"], dict) and doc["core"]["zmq-lb"]["noop_tasks_per_s"] > 0
    verdicts = {t["name"]: t["verdict"] for t in doc["targets"]}
    assert set(verdicts.values()) <= {"PASS", "MISS", "SKIP"}
