#!/usr/bin/env python3
"""Several nodes on one host running a PyTorch model on the CPU: how their OpenMP threads share the cores.

Why (``lama_cleaner/cpu_threads.py``): every process's PyTorch sizes its OpenMP pool to the cores and
its idle threads spin before they sleep, so N nodes running the model at once on one host kept N x
cores threads busy. Four servers run at once on loopback, each round measuring them in turn, rounds
pooled:

- classic mode;
- N local nodes as they start now: the libraries' thread counts, OpenMP threads waiting passively
  (``OMP_WAIT_POLICY=PASSIVE``, which the server gives the nodes it starts together);
- N local nodes spinning: the same with the variable set empty, so OpenMP keeps its default of
  spinning first (what every node did before);
- N local nodes dividing the cores: ``distributed.node_threads = cores / N`` (what Ray and TorchServe
  do), the alternative that was measured against passive waiting.

The model is the FFC generator of ``benchmarks/ffc_generator.py`` with random weights (nothing is
downloaded), loaded as ``lama`` through ``LAMA_MODEL_URL``, smaller than Big-LaMa by default so a
2-core machine answers in well under a second (``--big`` for Big-LaMa's own size: ~3 s a 512x512
request on 2 cores). POST ``/inpaint`` with a 512x512 PNG and the front end's lama form.

    python benchmarks/bench_node_threads.py                     # ~6 min on 2 cores
    python benchmarks/bench_node_threads.py --nodes 4 --concurrency 1,4,8 --rounds 3

Targets: at every concurrency of 2 or more (where two nodes run the model at once) the default >= 1.0x
the spinning nodes; at concurrency 1 (one request, the cores to itself) its median <= 1.1x classic's.
Without PyTorch it says why and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    PooledRounds,
    Target,
    consecutive_free_ports,
    format_table,
    ratio,
    write_results,
)
from benchmarks.inpaint_load import front_end_form, make_job, measure, post  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

SMALL = {"ngf": 32, "n_blocks": 3}
"""The default generator: ~0.43 s per 512x512 call with 2 threads on the 2-core box (Big-LaMa: ~2.9 s)."""


def distributed_args(work: Path, name: str, nodes: int, node_threads: int) -> list[str]:
    base = consecutive_free_ports(3)
    config = work / f"{name}.toml"
    config.write_text(
        f'[distributed]\nscheduler_bind = "tcp://127.0.0.1:{base}"\ndata_dir = "{work / name}"\n'
        f"node_threads = {node_threads}\n"
    )
    return ["--plugins", "distributed", "--config", str(config), "--local-nodes", str(nodes)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="local nodes of both distributed servers")
    parser.add_argument("--concurrency", default="1,2,8")
    parser.add_argument("--requests", type=int, default=12, help="requests per server, level and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--big", action="store_true", help="Big-LaMa's size (51 M parameters)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--max-seconds", type=float, default=1200)
    parser.add_argument("--results-dir", type=Path, default=None)
    opts = parser.parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        print("bench_node_threads: skipped: PyTorch is not installed (pip install torch==2.13.0)")
        return 0
    if "OMP_WAIT_POLICY" in os.environ:  # every server would inherit it, the default one included
        print("bench_node_threads: unset OMP_WAIT_POLICY first: the variants differ by it")
        return 2
    import torch

    from benchmarks.ffc_generator import traced_big_lama

    levels = [int(c) for c in opts.concurrency.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = max(1, cores // opts.nodes)
    form = front_end_form("lama")
    job = make_job(opts.size, opts.size, "png", seed=5)
    deadline = time.monotonic() + opts.max_seconds
    pooled = PooledRounds()
    with tempfile.TemporaryDirectory(prefix="bench-node-threads-") as tmp:
        work = Path(tmp)
        weights = work / "big-lama.pt"
        torch.jit.save(traced_big_lama(256, **({} if opts.big else SMALL)), str(weights))
        base = {"LAMA_MODEL_URL": str(weights), "OMP_NUM_THREADS": ""}  # the servers decide, not this shell
        default, spinning, divided = (
            f"{opts.nodes} nodes (default: passive wait)",
            f"{opts.nodes} nodes spinning (before)",
            f"{opts.nodes} nodes, {share} thread(s) each",
        )
        setups = {
            "classic": ([], {}),
            default: (distributed_args(work, "default", opts.nodes, 0), {}),
            spinning: (distributed_args(work, "spinning", opts.nodes, 0), {"OMP_WAIT_POLICY": ""}),
            divided: (distributed_args(work, "divided", opts.nodes, share), {}),
        }
        servers: dict[str, ServerProcess] = {}
        try:
            for name, (args, extra) in setups.items():
                servers[name] = ServerProcess(args, env=base | extra, model="lama", ready_timeout=180).start()
            for name, server in servers.items():  # warm-up: models loaded, nodes joined, TorchScript optimised
                wait_for(lambda s=server: post(s.url, job, form, opts.timeout)[1], 300, name)
                measure(server.url, job, form, max(levels), max(levels), deadline=deadline, timeout=opts.timeout)
            for level in levels:
                for _ in range(opts.rounds):
                    for name, server in servers.items():
                        stats = measure(
                            server.url, job, form, level, opts.requests, deadline=deadline, timeout=opts.timeout
                        )
                        pooled.add((name, level), stats)
        finally:
            for server in servers.values():
                server.stop()
    rows = pooled.rows(["server", "concurrency"])
    title = f"POST /inpaint, lama on the CPU ({cores} cores), {opts.size}x{opts.size} PNG (ms)"
    print(format_table(rows, title=title))
    by = {(r["server"], r["concurrency"]): r for r in rows}
    compare, targets = [], []
    for level in levels:
        rate = {name: by[(name, level)]["req_per_s"] for name in setups}
        row = {
            "concurrency": level,
            "default_vs_spinning": ratio(rate[default], rate[spinning]),
            "default_vs_divided": ratio(rate[default], rate[divided]),
            "default_vs_classic": ratio(rate[default], rate["classic"]),
            "spinning_vs_classic": ratio(rate[spinning], rate["classic"]),
        }
        compare.append(row)
        if level >= 2:
            targets.append(Target(f"default vs spinning, c={level}", row["default_vs_spinning"], ">=", 1.0))
        else:
            p50 = ratio(by[(default, level)]["p50"], by[("classic", level)]["p50"])
            targets.append(Target(f"default p50 vs classic p50, c={level}", p50, "<=", 1.1))
    print(format_table(compare, title="throughput ratios"))
    print(format_table([t.row() for t in targets], title="targets"))
    path = write_results(
        "bench_node_threads",
        {
            "settings": {"nodes": opts.nodes, "cores": cores, "share": share, "levels": levels, "big": opts.big}
            | {"requests": opts.requests, "rounds": opts.rounds, "size": opts.size},
            "results": rows,
            "ratios": compare,
            "targets": [t.to_json() for t in targets],
        },
        opts.results_dir,
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
