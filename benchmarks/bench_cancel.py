"""Cancel-to-idle: how long a node stays busy after ``DELETE /api/v1/tasks/{id}``.

Two kinds of model, both from ``tests/support/fake_models.py``:

- **stepping** (``steps``): checks for cancellation between steps, so the node should be free within
  about one step;
- **uninterruptible** (``block``): one long call that never looks at the flag, so the node has to
  kill and restart its inference process.

For each run the benchmark starts the task, waits until it is really running (first progress report
for ``steps``, ``processing`` for ``block``), sends ``DELETE`` and polls ``GET /api/v1/nodes`` every
few milliseconds until the node reports ``idle`` with no current task. It then submits a ``cv2`` task
and times it to completion, which proves the node is usable again (``next_task_ms``; the whole span is
``to_next_done``). ``retried_next`` counts follow-up tasks that needed a second attempt: a node that
says idle before its inference process is back gets a task it has to hand back.

    python benchmarks/bench_cancel.py                    # 5 runs per model, ~1 min on 2 cores
    python benchmarks/bench_cancel.py --runs 2 --quick   # smoke run

Everything runs on 127.0.0.1 (one ``lama-cleaner --plugins distributed`` server with one local node),
and is stopped at the end. Output: a table on stdout, JSON in benchmarks/results/bench_cancel-<UTC>.json
(plus ``bench_cancel-latest.json``). Targets (from docs/research: cancel -> idle below one step, and
below 500 ms for a LaMa-like uninterruptible model) are printed as PASS/MISS; a miss is a finding and
does not change the exit code.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    REPO_ROOT,
    ProcessGroup,
    Target,
    format_table,
    free_port,
    percentile,
    python_argv,
    summarize,
    wait_for,
    write_results,
)
from lama_cleaner.client import LamaCleanerClient  # noqa: E402

BENCH_NAME = "bench_cancel"
FAKE_MODELS = "tests.support.fake_models"
POLL_S = 0.005


def _png(width: int = 64, height: int = 48) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(7)
    image, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(image, format="PNG")
    m = np.zeros((height, width), dtype=np.uint8)
    m[10:20, 10:30] = 255
    Image.fromarray(m).save(mask, format="PNG")
    return image.getvalue(), mask.getvalue()


def _idle_node(client: LamaCleanerClient) -> dict[str, Any] | None:
    return next((n for n in client.nodes() if n["state"] == "idle" and not n.get("current_task")), None)


def measure(client: LamaCleanerClient, model: str, prompt: str, runs: int) -> list[dict[str, float]]:
    """``runs`` cancel measurements of ``model``; each row: delete_ms, cancel_to_idle_ms, next_task_ms."""
    image, mask = _png()
    rows = []
    for _ in range(runs):
        wait_for(lambda: _idle_node(client), 60, "an idle node before the run")
        task = client.submit(image, mask, model=model, prompt=prompt)
        if model == "steps":
            wait_for(lambda t=task["id"]: (client.get(t).get("progress") or 0) > 0, 60, "first progress")
        else:
            wait_for(lambda t=task["id"]: client.get(t)["status"] == "processing", 60, "processing")
        started = time.perf_counter()
        cancelled = client.cancel(task["id"])
        delete_done = time.perf_counter()
        if cancelled["status"] != "cancelled":
            raise RuntimeError(f"cancel answered {cancelled['status']}")
        wait_for(lambda: _idle_node(client), 60, "the node to report idle", interval=POLL_S)
        idle_at = time.perf_counter()
        follow = client.submit(image, mask, model="cv2")
        done = client.wait(follow["id"], timeout=60, poll=0.01)
        if done["status"] != "completed":
            raise RuntimeError(f"follow-up task {done['status']}: {done.get('error')}")
        rows.append(
            {
                "delete_ms": (delete_done - started) * 1000,
                "cancel_to_idle_ms": (idle_at - started) * 1000,
                "next_task_ms": (time.perf_counter() - idle_at) * 1000,
                "cancel_to_next_done_ms": (time.perf_counter() - started) * 1000,
                "next_task_attempts": done["attempts"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="Cancels measured per model.")
    parser.add_argument("--step-ms", type=int, default=100, help="Step duration of the stepping model.")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="distributed.heartbeat_interval_s.")
    parser.add_argument("--quick", action="store_true", help="Fewer runs (2) for a smoke test.")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs

    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-cancel-"))
    config = tmp / "config.json"
    config.write_text(json.dumps({"distributed": {"heartbeat_interval_s": args.heartbeat}}))
    port = free_port()
    argv_server = python_argv(
        "-m",
        "lama_cleaner",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        "cv2",
        "--device",
        "cpu",
        "--plugins",
        f"distributed,{FAKE_MODELS}",
        "--config",
        str(config),
        "--data-dir",
        str(tmp / "journal"),
        "--scheduler-bind",
        "tcp://127.0.0.1:0",
    )
    cases = [
        ("stepping", "steps", f"steps=100000 {args.step_ms}"),
        ("uninterruptible", "block", "600000"),
    ]
    results: dict[str, Any] = {"runs": runs, "step_ms": args.step_ms, "heartbeat_interval_s": args.heartbeat}
    table = []
    with ProcessGroup(tmp / "logs", env={"PYTHONPATH": str(REPO_ROOT)}) as group:
        group.start("server", argv_server)
        url = f"http://127.0.0.1:{port}"
        with LamaCleanerClient(url, timeout=30) as client:
            try:
                wait_for(
                    lambda: group.check_alive("server") or _try(lambda: _idle_node(client)),
                    120,
                    "the server and its local node",
                )
                for label, model, prompt in cases:
                    rows = measure(client, model, prompt, runs)
                    idle = summarize([r["cancel_to_idle_ms"] for r in rows])
                    results[label] = {
                        "model": model,
                        "rows": rows,
                        "cancel_to_idle_ms": idle,
                        "delete_ms": summarize([r["delete_ms"] for r in rows]),
                        "next_task_ms": summarize([r["next_task_ms"] for r in rows]),
                    }
                    table.append(
                        {
                            "model": f"{label} ({model})",
                            "runs": len(rows),
                            "idle_p50_ms": idle["p50"],
                            "idle_p95_ms": idle["p95"],
                            "idle_max_ms": idle["max"],
                            "delete_p50_ms": results[label]["delete_ms"]["p50"],
                            "next_task_p50_ms": results[label]["next_task_ms"]["p50"],
                            "to_next_done_p50_ms": percentile([r["cancel_to_next_done_ms"] for r in rows], 50),
                            "retried_next": sum(1 for r in rows if r["next_task_attempts"] > 1),
                        }
                    )
            except Exception:
                print(group.tail("server", 60), file=sys.stderr)
                raise

    print(
        format_table(
            table,
            title=f"cancel -> node idle ({runs} runs per model, step {args.step_ms} ms, "
            f"heartbeat {args.heartbeat:g} s)",
        )
    )
    targets = [
        Target(
            "stepping: cancel -> idle p95",
            results["stepping"]["cancel_to_idle_ms"]["p95"],
            "<=",
            float(args.step_ms) + 200,
            "ms",
            "one step plus messaging",
        ),
        Target(
            "uninterruptible: cancel -> idle p95",
            results["uninterruptible"]["cancel_to_idle_ms"]["p95"],
            "<=",
            500.0,
            "ms",
            "kill + restart of the inference process",
        ),
        Target(
            "follow-up tasks that needed a retry",
            float(sum(r["retried_next"] for r in table)),
            "<=",
            0.0,
            "",
            "a node reported idle before it could run work",
        ),
    ]
    print()
    print(format_table([t.row() for t in targets], title="targets"))
    results["targets"] = [t.to_json() for t in targets]
    path = write_results(BENCH_NAME, results, args.results_dir)
    print(f"\nresults: {path}")
    return 0


def _try(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - "not ready yet" while the server starts
        return None


if __name__ == "__main__":
    sys.exit(main())
