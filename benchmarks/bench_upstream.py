#!/usr/bin/env python3
"""Side by side with lama-cleaner 1.2.5 (cv2, CPU): classic and distributed mode against upstream (issue 11).

Upstream runs from a throwaway virtual environment, never from the test environment. Made once with
the package registry's ordinary client (1.2.5's own wheel plus the pure-Python pins its imports need;
torch, numpy, OpenCV and Pillow come from the test environment through a ``.pth`` line added after
the install, so nothing large is downloaded and both servers use the same OpenCV):

    UP=$(mktemp -d)  # a throwaway folder
    python3.11 -m venv "$UP"/venv
    "$UP"/venv/bin/pip install --no-deps lama-cleaner==1.2.5 flask==2.2.3 werkzeug==2.2.2 \\
        diffusers==0.16.1 transformers==4.27.4 tokenizers==0.13.3 huggingface-hub==0.14.1 regex \\
        piexif==1.1.3 "pydantic<2" controlnet-aux==0.0.3 flaskwebgui==0.3.5 omegaconf \\
        antlr4-python3-runtime==4.9.3 yacs
    echo "$PWD/.venv/lib/python3.11/site-packages" > "$UP"/venv/lib/python3.11/site-packages/zz_test_env.pth

    python benchmarks/bench_upstream.py --upstream "$UP"/venv      # ~5 min on 2 cores
    python benchmarks/bench_upstream.py --upstream "$UP"/venv --requests 8 --rounds 1   # quicker

Three servers run at once on loopback: upstream 1.2.5, ours classic, ours with ``--plugins
distributed --local-nodes 2``. For 1920x1080 JPEG and PNG at concurrency 1 and 8, each round measures
the three in turn (so load drift on a shared box hits all of them) and the rounds are pooled. It also
checks that upstream's and our replies have the same pixels. Without ``--upstream`` (or when that
environment cannot import 1.2.5) it says so and exits 0.

Targets (issue 11): classic >= 1.0x upstream's throughput on every case and >= 1.5x on PNG;
distributed with 2 local nodes >= 0.95x classic at concurrency 8; distributed adds <= 5 ms to the
median at concurrency 1.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    PooledRounds,
    ProcessGroup,
    Target,
    consecutive_free_ports,
    format_table,
    free_port,
    ratio,
    write_results,
)
from benchmarks.inpaint_load import front_end_form, make_job, measure, post  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def upstream_problem(venv: Path | None) -> str | None:
    """None when ``venv`` runs lama-cleaner 1.2.5's server module, else why not."""
    if venv is None:
        return "no --upstream environment given (see this script's docstring to make one)"
    python = venv / "bin" / "python"
    if not python.exists():
        return f"{python} does not exist"
    check = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, lama_cleaner.server; print(m.version('lama-cleaner'))"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check.returncode != 0:
        return f"{venv} cannot import lama_cleaner.server: {check.stderr.strip().splitlines()[-1:]}"
    if check.stdout.strip() != "1.2.5":
        return f"{venv} holds lama-cleaner {check.stdout.strip()}, not 1.2.5"
    return None


def start_upstream(group: ProcessGroup, venv: Path) -> str:
    port = free_port()
    argv = [str(venv / "bin" / "lama-cleaner"), "--model", "cv2", "--device", "cpu", "--host", "127.0.0.1"]
    # No PYTHONPATH: it would put this repository's lama_cleaner in front of 1.2.5's.
    group.start("upstream", [*argv, "--port", str(port)], env={"PYTHONPATH": ""}, cwd=Path(tempfile.gettempdir()))
    url = f"http://127.0.0.1:{port}"
    import requests

    def answers() -> bool:
        try:
            return requests.get(url + "/model", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(answers, 180, "lama-cleaner 1.2.5 to answer")
    return url


def distributed_args(work: Path, nodes: int, shared_memory_mb: int | None = None) -> list[str]:
    """A distributed server on free loopback ports (``shared_memory_mb``: that setting, else its default)."""
    base = consecutive_free_ports(3)
    config = work / "distributed.toml"
    extra = "" if shared_memory_mb is None else f"shared_memory_mb = {shared_memory_mb}\n"
    config.write_text(
        f'[distributed]\nscheduler_bind = "tcp://127.0.0.1:{base}"\ndata_dir = "{work / "journal"}"\n{extra}'
    )
    return ["--plugins", "distributed", "--config", str(config), "--local-nodes", str(nodes)]


def same_pixels(a: bytes, b: bytes) -> bool:
    return bool(np.array_equal(np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b)))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, default=None, help="virtual environment holding lama-cleaner 1.2.5")
    parser.add_argument("--requests", type=int, default=16, help="requests per server, level and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--nodes", type=int, default=2, help="local nodes of the distributed server")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--max-seconds", type=float, default=1800)
    parser.add_argument("--results-dir", type=Path, default=None)
    opts = parser.parse_args(argv)
    problem = upstream_problem(opts.upstream)
    if problem:
        print(f"bench_upstream: skipped: {problem}")
        return 0
    levels = [int(c) for c in opts.concurrency.split(",")]
    form = front_end_form("cv2")
    jobs = [make_job(1920, 1080, "jpeg", seed=21), make_job(1920, 1080, "png", seed=22)]
    deadline = time.monotonic() + opts.max_seconds
    pooled = PooledRounds()
    identical: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp, ProcessGroup(Path(tmp) / "logs") as group:
        servers = {"upstream 1.2.5": start_upstream(group, opts.upstream)}
        classic = ServerProcess([], ready_timeout=120).start()
        dist = ServerProcess(distributed_args(Path(tmp), opts.nodes), ready_timeout=120).start()
        try:
            servers["classic"], servers[f"distributed {opts.nodes} nodes"] = classic.url, dist.url
            for job in jobs:
                replies = {}
                for name, url in servers.items():  # warm-up, and a distributed server's nodes have joined
                    replies[name] = wait_for(lambda url=url, job=job: post(url, job, form, opts.timeout)[1], 120, name)
                identical[job.label] = all(same_pixels(replies["upstream 1.2.5"], r) for r in replies.values())
                for level in levels:
                    for _ in range(opts.rounds):
                        for name, url in servers.items():
                            stats = measure(
                                url, job, form, level, opts.requests, deadline=deadline, timeout=opts.timeout, warmup=0
                            )
                            pooled.add((name, job.label, level), stats)
        finally:
            dist.stop()
            classic.stop()
    rows = pooled.rows(["server", "job", "concurrency"])
    print(format_table(rows, title="POST /inpaint, cv2, 1920x1080, side by side (ms)"))
    by = {(r["server"], r["job"], r["concurrency"]): r for r in rows}
    dist_name = f"distributed {opts.nodes} nodes"
    compare, targets = [], []
    for job in jobs:
        for level in levels:
            up, ours, dd = (by[(s, job.label, level)] for s in ("upstream 1.2.5", "classic", dist_name))
            row = {
                "job": job.label,
                "concurrency": level,
                "classic_vs_upstream": ratio(ours["req_per_s"], up["req_per_s"]),
                "distributed_vs_upstream": ratio(dd["req_per_s"], up["req_per_s"]),
                "distributed_vs_classic": ratio(dd["req_per_s"], ours["req_per_s"]),
                "added_p50_ms": dd["p50"] - ours["p50"],
            }
            compare.append(row)
            need = 1.5 if "png" in job.label else 1.0
            targets.append(Target(f"classic vs 1.2.5, {job.label} c={level}", row["classic_vs_upstream"], ">=", need))
            if level >= 8:
                targets.append(
                    Target(f"distributed vs classic, {job.label} c={level}", row["distributed_vs_classic"], ">=", 0.95)
                )
            if level == 1:
                targets.append(Target(f"added p50, {job.label} c=1", row["added_p50_ms"], "<=", 5.0, unit="ms"))
    print(format_table(compare, title="ratios (throughput) and added median latency"))
    print(format_table([t.row() for t in targets], title="targets (issue 11)"))
    print("same pixels as 1.2.5:", identical)
    path = write_results(
        "bench_upstream",
        {
            "settings": {"requests": opts.requests, "rounds": opts.rounds, "levels": levels, "nodes": opts.nodes},
            "results": rows,
            "comparison": compare,
            "same_pixels_as_upstream": identical,
            "targets": [t.to_json() for t in targets],
        },
        opts.results_dir,
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
