#!/usr/bin/env python3
"""GPU throughput of ``lama`` with a model of Big-LaMa's size: model alone, classic, distributed (issue 11).

On a machine with CUDA it builds a random-weight FFC ResNet generator of Big-LaMa's architecture
(``benchmarks/ffc_generator.py``, 51 M parameters, no weights downloaded), traces it, saves it where
``LAMA_MODEL_URL`` points, and measures:

- the model alone at 512x512 and 1920x1080 (fp32): on the device, with 1.2.5's host-side float
  conversions and copies around it, and through ``LaMa.forward`` (uint8 copies, converted on the device);
- ``POST /inpaint`` through the real server: classic mode, distributed mode with 1 local node and with
  ``--nodes`` local nodes on the same GPU; 512x512 PNG and 1920x1080 JPEG (the front end's lama form:
  Crop, trigger 800, margin 196); concurrency 1, 8 and 32. The first round of each server starts right
  after it answers, unwarmed (``warmup=0``), so a cold start shows in its p95;
- the GPU's busy fraction during each level (``nvidia-smi`` utilization, sampled every 200 ms);
- the one-node run once per ``--pipeline-depth`` (default ``1,auto``: a node holding one task at a
  time, then the depth a node derives from this machine, ``node/depth.py``), so the gain of
  overlapping decoding and encoding with the model shows on the same GPU.

Without CUDA it prints why and exits 0. ``--cpu-smoke`` runs the whole script on the CPU with a tiny
generator and a few requests, to check the script itself (its numbers mean nothing).

    python benchmarks/bench_gpu.py                        # ~10 min on one GPU
    python benchmarks/bench_gpu.py --requests 24 --concurrency 1,8 --nodes 2
    python benchmarks/bench_gpu.py --pipeline-depth 1,2,3 --nodes 0      # depths on one node only
    python benchmarks/bench_gpu.py --cpu-smoke            # no GPU: checks the script

Targets (issue 11): 512x512 PNG at concurrency >= 8 reaches >= 0.8x the model-only rate and is never
below classic, with p95 <= 2x p50 including the first requests after start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Target, consecutive_free_ports, format_table, ratio, write_results  # noqa: E402
from benchmarks.inpaint_load import front_end_form, make_job, measure, post  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def cuda_unavailable_reason() -> str | None:
    """None when torch sees a CUDA device, else a sentence saying why not."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA device is visible to PyTorch {torch.__version__}"
    return None


class GpuBusy:
    """The GPU's utilization (0-100) sampled by ``nvidia-smi -lms 200`` while the context is open."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            return self
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip().split(",")[0]))
            except ValueError:
                continue

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._reader is not None:
            self._reader.join(2)

    @property
    def fraction(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100.0 if self.samples else None


def model_only(path: Path, device: str, sizes: list[tuple[int, int]], repeat: int) -> list[dict[str, Any]]:
    """Calls per second of the traced model alone; with 1.2.5's host-side conversions around it (float32
    built on the host, copied both ways); and through the product's ``LaMa.forward`` (uint8 copies,
    conversions on the device). The last two differ only in where the bytes are converted."""
    import numpy as np
    import torch

    from lama_cleaner.config import Config
    from lama_cleaner.inpaint_request import InpaintRequest, default_form
    from lama_cleaner.models.lama import LaMa

    os.environ["LAMA_MODEL_URL"] = str(path)
    lama = LaMa(device, Config())
    model = lama.model
    req = InpaintRequest.from_form(default_form(hdStrategy="Original"))
    rows = []
    for width, height in sizes:
        image = torch.rand(1, 3, height, width, device=device)
        mask = (torch.rand(1, 1, height, width, device=device) > 0.97).float()
        host_image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        host_mask = (mask[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)

        def device_only(image: Any = image, mask: Any = mask) -> None:
            with torch.no_grad():
                model(image, mask)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def upstream_copies(host_image: Any = host_image, host_mask: Any = host_mask) -> None:
            chw = np.ascontiguousarray(host_image.transpose(2, 0, 1), dtype=np.float32) / 255.0
            plane = (host_mask.transpose(2, 0, 1) > 0).astype(np.float32)
            with torch.no_grad():
                out = model(torch.from_numpy(chw).unsqueeze(0).to(device), torch.from_numpy(plane)[None].to(device))
            (out[0].permute(1, 2, 0).cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)

        def product_forward(host_image: Any = host_image, host_mask: Any = host_mask) -> None:
            lama.forward(host_image, host_mask, req)

        for name, fn in (
            ("model", device_only),
            ("model + 1.2.5's host conversions", upstream_copies),
            ("LaMa.forward (uint8 copies)", product_forward),
        ):
            for _ in range(3):
                fn()
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            per_call = (time.perf_counter() - start) / repeat
            rows.append({"what": name, "size": f"{width}x{height}", "ms": per_call * 1000, "per_s": 1 / per_call})
    lama.close()
    return rows


def server_args(mode: str, nodes: int, work: Path, depth: int = 0) -> list[str]:
    """The server's arguments; ``depth``: the local nodes' ``node_pipeline_depth`` (0 = derived)."""
    if mode == "classic":
        return []
    base = consecutive_free_ports(3)
    config = work / f"distributed-{nodes}-{depth}.toml"
    config.write_text(
        f'[distributed]\nscheduler_bind = "tcp://127.0.0.1:{base}"\ndata_dir = "{work / f"journal-{nodes}-{depth}"}"\n'
        f"node_pipeline_depth = {depth}\n"
    )
    return ["--plugins", "distributed", "--config", str(config), "--local-nodes", str(nodes)]


def parse_depths(text: str, device: str) -> list[int]:
    """``--pipeline-depth``: integers >= 1, ``auto`` = the depth a node on ``device`` derives here;
    duplicates dropped (auto is 1 on a CPU), order kept."""
    from lama_cleaner.plugins.distributed.node.depth import default_depth

    depths: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        depth = default_depth(device) if part == "auto" else int(part)
        if depth < 1:
            raise SystemExit(f"--pipeline-depth: {part!r} is not a depth (an integer >= 1 or auto)")
        if depth not in depths:
            depths.append(depth)
    return depths or [1]


def run_server(
    label: str, args: list[str], device: str, env: dict[str, str], jobs: list[Any], levels: list[int], opts: Any
) -> list[dict[str, Any]]:
    form = front_end_form("lama")
    rows = []
    deadline = time.monotonic() + opts.max_seconds
    with ServerProcess(args, env=env, model="lama", device=device, ready_timeout=300) as server:
        first = True
        for job in jobs:
            # A distributed server answers /model before its nodes joined: wait for a first real reply,
            # except for the very first round, which measures the first requests after start.
            if not first:
                wait_for(lambda job=job: post(server.url, job, form, opts.timeout), 300, f"{label}: a reply")
            for level in levels:
                with GpuBusy() as busy:
                    stats = measure(
                        server.url,
                        job,
                        form,
                        level,
                        max(opts.requests, level),
                        deadline=deadline,
                        timeout=opts.timeout,
                        warmup=0 if first else 1,
                    )
                row = {"server": label, "job": job.label, "concurrency": level, **stats, "gpu_busy": busy.fraction}
                row["cold_start"] = first
                rows.append(row)
                first = False
                print(format_table([row], ["server", "job", "concurrency", "p50", "p95", "req_per_s", "gpu_busy"]))
    return rows


def node_counts(spec: str) -> list[int]:
    """The N-node runs ``--nodes`` asks for: each count above 1, once, in the order given."""
    counts: list[int] = []
    for part in spec.split(","):
        count = int(part)
        if count > 1 and count not in counts:
            counts.append(count)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes",
        default="4",
        help="comma-separated local node counts on the one GPU, one N-node run each (counts of 1 or less: "
        "no N-node run; 2,4 compares deployments for the nodes-per-GPU recommendation)",
    )
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=48, help="measured requests per level (at least the level)")
    parser.add_argument("--repeat", type=int, default=30, help="model-only calls per size")
    parser.add_argument("--max-seconds", type=float, default=900, help="time budget per server")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: tiny model on the CPU, few requests")
    parser.add_argument(
        "--pipeline-depth",
        default="1,auto",
        help="comma-separated depths of the one-node run: integers, or auto for the depth derived from "
        "this machine (default: %(default)s); --nodes 0 skips the N-node run",
    )
    parser.add_argument("--results-dir", type=Path, default=None)
    opts = parser.parse_args(argv)

    reason = cuda_unavailable_reason()
    if reason and not opts.cpu_smoke:
        print(f"bench_gpu: skipped: {reason}. Run it on a machine with an NVIDIA GPU (or --cpu-smoke).")
        return 0
    from benchmarks.ffc_generator import traced_big_lama

    device = "cpu" if opts.cpu_smoke else "cuda"
    generator = {"ngf": 8, "n_blocks": 1} if opts.cpu_smoke else {}
    levels = [int(c) for c in opts.concurrency.split(",")]
    depths = parse_depths(opts.pipeline_depth, device)
    sizes = [(512, 512), (1920, 1080)]
    if opts.cpu_smoke:
        levels, opts.requests, opts.repeat, sizes = [1, 2], 2, 2, [(128, 128), (320, 192)]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        weights = work / "big-lama.pt"
        import torch

        torch.jit.save(traced_big_lama(64 if opts.cpu_smoke else 512, device=device, **generator), str(weights))
        env = {"LAMA_MODEL_URL": str(weights)}
        alone = model_only(weights, device, sizes, opts.repeat)
        print(format_table(alone, title="the model alone (fp32)"))
        jobs = [make_job(*sizes[0], "png"), make_job(*sizes[1], "jpeg")]
        rows: list[dict[str, Any]] = []
        servers = [("classic", server_args("classic", 0, work))]
        servers += [(f"distributed 1 node depth {d}", server_args("distributed", 1, work, d)) for d in depths]
        for count in node_counts(opts.nodes):
            servers.append((f"distributed {count} nodes", server_args("distributed", count, work)))
        for label, args in servers:
            rows += run_server(label, args, device, env, jobs, levels, opts)

    columns = ["server", "job", "concurrency", "cold_start", "n", "p50", "p95", "max", "req_per_s", "gpu_busy"]
    print(format_table(rows, columns, title="POST /inpaint, lama (random weights), one GPU"))
    small = jobs[0].label
    model_rate = next(r["per_s"] for r in alone if r["what"] == "model" and r["size"] == f"{sizes[0][0]}x{sizes[0][1]}")
    classic = {r["concurrency"]: r for r in rows if r["server"] == "classic" and r["job"] == small}
    targets = []
    for r in rows:
        if r["job"] != small or r["concurrency"] < 8 or r["server"] == "classic":
            continue
        name = f"{r['server']} c={r['concurrency']}"
        targets += [
            Target(f"{name}: >= 0.8x model-only rate", ratio(r["req_per_s"], model_rate), ">=", 0.8),
            Target(f"{name}: >= classic", ratio(r["req_per_s"], classic[r["concurrency"]]["req_per_s"]), ">=", 1.0),
            Target(f"{name}: p95 <= 2x p50", ratio(r["p95"], r["p50"]), "<=", 2.0),
        ]
    shallow = {r["concurrency"]: r for r in rows if r["server"] == f"distributed 1 node depth {depths[0]}"}
    for r in rows:
        deeper = (
            r["server"].startswith("distributed 1 node depth ")
            and r["server"] != f"distributed 1 node depth {depths[0]}"
        )
        if deeper and r["job"] == small and r["concurrency"] >= 8 and r["concurrency"] in shallow:
            name = f"{r['server']} c={r['concurrency']}"
            base = shallow[r["concurrency"]]["req_per_s"]
            targets.append(Target(f"{name}: >= depth {depths[0]}", ratio(r["req_per_s"], base), ">=", 1.0))
    if targets:
        print(format_table([t.row() for t in targets], title="targets (issue 11)"))
    path = write_results(
        "bench_gpu",
        {
            "device": device,
            "smoke": opts.cpu_smoke,
            "pipeline_depths": depths,
            "model_only": alone,
            "results": rows,
            "targets": [t.to_json() for t in targets],
        },
        opts.results_dir,
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
