"""Autoscale reaction times with the ``local`` provider: scale-out to first work, and last work to node exit.

Each run starts from zero nodes with the autoscaler running (started by the plugin's ``scheduler_started`` hook,
APScheduler's job every ``--interval`` s) beside a real scheduler thread, then:

1. submits a burst of ``--tasks`` tasks (``count`` test model, ``--task-ms`` each). The backlog
   crosses the scale-up threshold with the first one (no node serves the queue). Measured from that
   submit: the scale-up decision (``decision_ms``), the first node registered (``registered_ms``),
   and **the first task running on the new node** (``first_task_ms``, the task seen ``processing``);
2. waits for the last task to complete, then measures **from that moment to the exit of the last
   node process** (``exit_ms``): ``down_window_s`` idle, the next evaluation, the drain, the node's
   goodbye and its process exit. ``drain_ms`` is from the last task to the scale-down decision.

Every node is a real ``lama-cleaner node`` process (imports, inference process, HELLO), so the first
number is dominated by process start-up on this machine. Tasks are checked to have run exactly once.

    python benchmarks/bench_autoscale.py                 # 3 runs, ~1-2 min on 2 cores
    python benchmarks/bench_autoscale.py --quick         # 1 run
    python benchmarks/bench_autoscale.py --interval 0.5 --down-window 2 --max-nodes 2

Output: a table on stdout (with the policy settings used), JSON in
benchmarks/results/bench_autoscale-<UTC>.json (plus ``bench_autoscale-latest.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import format_table, summarize, wait_for, write_results  # noqa: E402

BENCH_NAME = "bench_autoscale"
REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["distributed", "autoscale", "tests.support.fake_models"]


def build_config(tmp: Path, args: argparse.Namespace) -> Any:
    from lama_cleaner.config import Config
    from lama_cleaner.plugins.autoscale.config import QueuePolicy

    cfg = Config()
    cfg.device, cfg.model, cfg.plugins = "cpu", "cv2", list(PLUGINS)
    dist = cfg.distributed
    dist.scheduler_bind = "tcp://127.0.0.1:0"
    dist.data_dir = str(tmp / "journal")
    dist.heartbeat_interval_s, dist.heartbeat_liveness = 0.25, 4
    dist.reconnect_min_s, dist.reconnect_max_s = 0.1, 0.5
    cfg.autoscale.interval_s = args.interval
    cfg.autoscale.queues = {
        "cpu": QueuePolicy(
            min_nodes=0,
            max_nodes=args.max_nodes,
            providers=["local"],
            queued_per_node=args.queued_per_node,
            max_wait_s=0,
            up_window_s=args.up_window,
            up_cooldown_s=args.up_cooldown,
            down_window_s=args.down_window,
            down_cooldown_s=args.down_cooldown,
            max_step_down=args.max_nodes,
        )
    }
    cfg.autoscale.providers = {"local": {"max_nodes": args.max_nodes, "device": "cpu", "stop_grace_s": 5}}
    return cfg


def one_run(run: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
    from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
    from lama_cleaner.plugins.distributed.wire import protocol as p
    from lama_cleaner.plugins.manager import create_plugin_manager
    from tests.integration.distributed.conftest import mask_png, png, task_form

    work = tmp / f"run-{run}"
    work.mkdir()
    count_file = work / "runs.txt"
    os.environ["LAMA_TEST_COUNT_FILE"] = str(count_file)
    config = build_config(work, args)
    pm = create_plugin_manager(PLUGINS)
    scheduler = Scheduler(config, lambda kind, name: "cpu", plugin_manager=pm).start()  # fires scheduler_started
    client = SchedulerClient(scheduler.control_endpoint, config)
    from lama_cleaner.plugins.autoscale import plugin

    runtime = plugin._registry().first()
    autoscaler = runtime.autoscaler
    local = autoscaler.providers["local"]

    def submit(marker: str) -> str:
        header = {
            "task": {"kind": "inpaint", "name": "count", "form": task_form(f"{args.task_ms} {marker}"),
                     "submitter": None, "idempotency_key": None},
            "blobs": ["image", "mask"],
        }  # fmt: skip
        return client.request(p.SUBMIT, header, [png(), mask_png()]).header["task"]["id"]

    def task_status(task_id: str) -> str:
        return client.request(p.GET, {"task_id": task_id}).header["task"]["status"]

    def decision(action: str) -> Any:
        return next((o for o in autoscaler.outcomes if o.decision.action == action), None)

    try:
        markers = [f"r{run}t{i}" for i in range(args.tasks)]
        crossed = time.monotonic()
        crossed_clock = autoscaler.clock()
        ids = [submit(m) for m in markers]
        up = wait_for(lambda: decision("scale_up"), 60, "a scale-up decision")
        registered = wait_for(
            lambda: (
                any(n.get("state") == "idle" or n.get("state") == "busy" for n in scheduler.stats()["node_list"])
                and time.monotonic()
            ),
            120,
            "a node registered",
        )
        first = wait_for(lambda: any(task_status(t) in ("processing", "completed") for t in ids) and time.monotonic(),
                         120, "the first task running")  # fmt: skip
        wait_for(lambda: all(task_status(t) == "completed" for t in ids), 300, "every task completed")
        last_done = time.monotonic()
        last_done_clock = autoscaler.clock()
        down = wait_for(lambda: decision("scale_down"), 300, "a scale-down decision")
        wait_for(lambda: not local.state()["running"], 120, "every node process exited")
        exited = time.monotonic()
        runs = Counter(count_file.read_text().split())
        return {
            "run": run,
            "nodes_started": sum(
                o.decision.action == "scale_up" and sum(o.started.values()) for o in autoscaler.outcomes
            ),
            "decision_ms": (up.decision.at - crossed_clock) * 1000,
            "registered_ms": (registered - crossed) * 1000,
            "first_task_ms": (first - crossed) * 1000,
            "drain_ms": (down.decision.at - last_done_clock) * 1000,
            "exit_ms": (exited - last_done) * 1000,
            "exactly_once": runs == Counter(markers),
            "up_reason": up.decision.reason,
            "down_reason": down.decision.reason,
        }
    finally:
        pm.hook.shutdown(config=config, role="serve")
        client.close()
        scheduler.stop()
        scheduler.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="Measured runs (each from zero nodes).")
    parser.add_argument("--tasks", type=int, default=6, help="Tasks in the burst.")
    parser.add_argument("--task-ms", type=int, default=300, help="Duration of one task.")
    parser.add_argument("--interval", type=float, default=1.0, help="autoscale.interval_s.")
    parser.add_argument("--max-nodes", type=int, default=2, help="max_nodes of the queue and of the provider.")
    parser.add_argument("--queued-per-node", type=float, default=2.0, help="queued_per_node.")
    parser.add_argument("--up-window", type=float, default=0.0, help="up_window_s.")
    parser.add_argument("--up-cooldown", type=float, default=5.0, help="up_cooldown_s.")
    parser.add_argument("--down-window", type=float, default=5.0, help="down_window_s.")
    parser.add_argument("--down-cooldown", type=float, default=0.0, help="down_cooldown_s.")
    parser.add_argument("--quick", action="store_true", help="One run (a smoke test).")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if x)

    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-autoscale-"))
    rows = [one_run(i + 1, args, tmp) for i in range(runs)]
    settings = {
        "interval_s": args.interval,
        "max_nodes": args.max_nodes,
        "queued_per_node": args.queued_per_node,
        "up_window_s": args.up_window,
        "up_cooldown_s": args.up_cooldown,
        "down_window_s": args.down_window,
        "down_cooldown_s": args.down_cooldown,
        "tasks": args.tasks,
        "task_ms": args.task_ms,
    }
    columns = ["run", "nodes_started", "decision_ms", "registered_ms", "first_task_ms", "drain_ms", "exit_ms",
               "exactly_once"]  # fmt: skip
    print(
        format_table(
            rows, columns, title="autoscale (local provider): " + ", ".join(f"{k}={v:g}" for k, v in settings.items())
        )
    )
    summary = {key: summarize([r[key] for r in rows]) for key in ("decision_ms", "registered_ms", "first_task_ms",
                                                                    "drain_ms", "exit_ms")}  # fmt: skip
    print()
    print(
        format_table([{"metric": k, **{s: v[s] for s in ("p50", "max")}} for k, v in summary.items()], title="summary")
    )
    path = write_results(BENCH_NAME, {"settings": settings, "runs": rows, "summary": summary}, args.results_dir)
    print(f"\nresults: {path}")
    return 0 if all(r["exactly_once"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
