#!/usr/bin/env python3
"""Nodes sharing a host's cores against nodes each using all of them: a PyTorch model on the CPU.

Why (``lama_cleaner/cpu_threads.py``): every process's PyTorch sizes its OpenMP pool to all the cores,
so N nodes on one host running the model at once run N x cores spinning threads. A server's local
nodes now get ``cores / N`` threads each (``distributed.node_threads = 0``). This measures that
default against the old behaviour (``node_threads`` = the host's cores: before, every node kept the
libraries' defaults, about one thread per core) and against classic mode, side by side: three
servers at once on loopback, each round measuring the three in turn, rounds pooled.

The model is the FFC generator of ``benchmarks/ffc_generator.py`` with random weights (nothing is
downloaded), loaded as ``lama`` through ``LAMA_MODEL_URL``, smaller than Big-LaMa by default so a
2-core machine answers in well under a second (``--big`` for Big-LaMa's own size: ~3 s a 512x512
request on 2 cores). POST ``/inpaint`` with a 512x512 PNG and the front end's lama form.

    python benchmarks/bench_node_threads.py                     # ~3 min on 2 cores
    python benchmarks/bench_node_threads.py --nodes 4 --concurrency 4,8 --rounds 3

Target: the shared default >= 1.0x the all-cores nodes at every concurrency of 2 or more (where two
nodes run the model at once). Without PyTorch it says why and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Target, consecutive_free_ports, format_table, ratio, summarize, write_results  # noqa: E402
from benchmarks.inpaint_load import front_end_form, make_job, measure, post  # noqa: E402
from lama_cleaner.cpu_threads import host_cpus  # noqa: E402
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
    parser.add_argument("--concurrency", default="2,8")
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
    import torch

    from benchmarks.ffc_generator import traced_big_lama

    levels = [int(c) for c in opts.concurrency.split(",")]
    cores = host_cpus()
    share = max(1, cores // opts.nodes)
    form = front_end_form("lama")
    job = make_job(opts.size, opts.size, "png", seed=5)
    deadline = time.monotonic() + opts.max_seconds
    pooled: dict[tuple[str, int], list[float]] = {}
    walls: dict[tuple[str, int], list[tuple[int, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-node-threads-") as tmp:
        work = Path(tmp)
        weights = work / "big-lama.pt"
        torch.jit.save(traced_big_lama(256, **({} if opts.big else SMALL)), str(weights))
        env = {"LAMA_MODEL_URL": str(weights), "OMP_NUM_THREADS": ""}  # the servers decide, not this shell
        setups = {
            "classic": [],
            f"{opts.nodes} nodes, {share} thread(s) each (default)": distributed_args(work, "shared", opts.nodes, 0),
            f"{opts.nodes} nodes, {cores} threads each (all cores)": distributed_args(work, "all", opts.nodes, cores),
        }
        servers: dict[str, ServerProcess] = {}
        try:
            for name, args in setups.items():
                servers[name] = ServerProcess(args, env=env, model="lama", ready_timeout=180).start()
            for name, server in servers.items():  # warm-up: models loaded, nodes joined, TorchScript optimised
                wait_for(lambda s=server: post(s.url, job, form, opts.timeout)[1], 300, name)
                measure(server.url, job, form, max(levels), max(levels), deadline=deadline, timeout=opts.timeout)
            for level in levels:
                for _ in range(opts.rounds):
                    for name, server in servers.items():
                        stats = measure(
                            server.url, job, form, level, opts.requests, deadline=deadline, timeout=opts.timeout
                        )
                        pooled.setdefault((name, level), []).extend(stats["latencies_ms"])
                        walls.setdefault((name, level), []).append((int(stats["n"]), stats["wall_s"]))
        finally:
            for server in servers.values():
                server.stop()
    rows = []
    for (name, level), latencies in pooled.items():
        done = sum(n for n, _ in walls[(name, level)])
        wall = sum(w for _, w in walls[(name, level)])
        stats = summarize(latencies)
        rows.append(
            {"server": name, "concurrency": level, "n": done, "p50": stats["p50"], "p95": stats["p95"]}
            | {"req_per_s": done / wall}
        )
    title = f"POST /inpaint, lama on the CPU ({cores} cores), {opts.size}x{opts.size} PNG (ms)"
    print(format_table(rows, title=title))
    by = {(r["server"], r["concurrency"]): r["req_per_s"] for r in rows}
    shared_name, all_name = list(setups)[1], list(setups)[2]
    compare, targets = [], []
    for level in levels:
        row = {
            "concurrency": level,
            "default_vs_all_cores": ratio(by[(shared_name, level)], by[(all_name, level)]),
            "default_vs_classic": ratio(by[(shared_name, level)], by[("classic", level)]),
            "all_cores_vs_classic": ratio(by[(all_name, level)], by[("classic", level)]),
        }
        compare.append(row)
        if level >= 2:
            targets.append(Target(f"default vs all cores, c={level}", row["default_vs_all_cores"], ">=", 1.0))
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
