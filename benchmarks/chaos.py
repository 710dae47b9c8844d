"""Chaos soak: thousands of tasks through the whole distributed stack while it is being broken.

A web server with its embedded scheduler and journal on disk, N node subprocesses each behind its
own loopback TCP proxies, and client threads that submit ``cv2`` tasks with idempotency keys and
retry with the same key. Meanwhile, seeded and triggered by progress (so a run is reproducible on
any machine): nodes are SIGKILLed and restarted, the server is SIGKILLed and restarted on the same
ports with the same journal, node links are cut and restored, node processes are frozen (SIGSTOP)
past the liveness window and thawed, inference processes are SIGKILLed under their node, and the
clients' connections are cut.
Every result is checked against ``cv2.inpaint`` run here, and every key is submitted once more at
the end (it must name the same task, in the same final state, with the same image).

    python benchmarks/chaos.py                          # 2,000 tasks, 3 server kills, ~5 min on 2 cores
    python benchmarks/chaos.py --tasks 300 --server-kills 1 --node-kills 3 --link-cuts 3   # a quick one

Prints the figures (accepted, completed, failed with reasons, lost, delivered twice, wrong results,
recovery times per fault kind), writes JSON to benchmarks/results/chaos-<UTC>.json (and
chaos-latest.json), and exits 1 when anything was lost, delivered twice or wrong (or the harness
itself failed). The harness lives in ``tests/support/chaos`` and is shared with
``tests/integration/distributed/test_chaos_short.py``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import write_results  # noqa: E402
from tests.support.chaos.cluster import ClusterSettings  # noqa: E402
from tests.support.chaos.soak import SoakSettings, run_soak  # noqa: E402
from tests.support.chaos.verdict import format_report  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    defaults = SoakSettings()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=defaults.tasks, help="tasks to submit (default %(default)s)")
    ap.add_argument("--seed", type=int, default=defaults.seed, help="seed of the inputs and the faults")
    ap.add_argument("--nodes", type=int, default=ClusterSettings().nodes, help="node subprocesses")
    ap.add_argument("--clients", type=int, default=defaults.clients, help="client threads")
    ap.add_argument("--window", type=int, default=defaults.window, help="tasks in flight per client thread")
    ap.add_argument("--classic-every", type=int, default=defaults.classic_every, help="every n-th task via /inpaint")
    ap.add_argument("--size", type=int, default=96, help="image side in pixels (default %(default)s)")
    ap.add_argument("--server-kills", type=int, default=defaults.server_kills)
    ap.add_argument("--server-terms", type=int, default=defaults.server_terms, help="graceful SIGTERM + restart")
    ap.add_argument("--node-kills", type=int, default=defaults.node_kills)
    ap.add_argument("--link-cuts", type=int, default=defaults.link_cuts)
    ap.add_argument("--client-cuts", type=int, default=defaults.client_cuts)
    ap.add_argument("--node-freezes", type=int, default=defaults.node_freezes)
    ap.add_argument("--inference-kills", type=int, default=defaults.inference_kills)
    ap.add_argument(
        "--external-scheduler",
        action="store_true",
        help="run `lama-cleaner scheduler` as its own process (the web server uses --scheduler)",
    )
    ap.add_argument("--scheduler-kills", type=int, default=0, help="with --external-scheduler")
    ap.add_argument("--max-attempts", type=int, default=ClusterSettings().max_attempts, help="distributed.retry")
    ap.add_argument("--deadline", type=float, default=defaults.deadline_s, help="seconds before the run gives up")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (journal, logs) even when all is well")
    ap.add_argument("--results-dir", type=Path, default=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scheduler_kills and not args.external_scheduler:
        parser.error("--scheduler-kills needs --external-scheduler (the embedded scheduler dies with the server)")
    settings = SoakSettings(
        tasks=args.tasks,
        seed=args.seed,
        clients=args.clients,
        window=args.window,
        classic_every=args.classic_every,
        image_size=(args.size, args.size),
        server_kills=args.server_kills,
        server_terms=args.server_terms,
        node_kills=args.node_kills,
        link_cuts=args.link_cuts,
        client_cuts=args.client_cuts,
        node_freezes=args.node_freezes,
        inference_kills=args.inference_kills,
        scheduler_kills=args.scheduler_kills,
        deadline_s=args.deadline,
        cluster=ClusterSettings(
            nodes=args.nodes, max_attempts=args.max_attempts, external_scheduler=args.external_scheduler
        ),
    )
    workdir = Path(tempfile.mkdtemp(prefix="lama-chaos-"))
    report = run_soak(settings, workdir, say=lambda line: print(line, flush=True))
    print()
    print(format_report(report))
    path = write_results("chaos", report, args.results_dir)
    print(f"\nJSON: {path}")
    if report["ok"] and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"work folder kept: {workdir}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
