#!/usr/bin/env python3
"""``POST /inpaint`` latency and throughput through the real server, classic vs distributed mode.

Starts ``lama-cleaner --model cv2 --device cpu`` as a subprocess on a loopback port (classic mode,
then ``--plugins distributed`` with its scheduler on free loopback ports and one local node), sends
the front end's exact request (34 fields + image + mask) at 512x512 and 1920x1080 with 1, 4 and 8
concurrent clients, prints a table and writes JSON to ``benchmarks/results/``. The last table is what
the distributed mode adds to the median latency. Every loop is bounded by a request count and by
``--max-seconds``; the servers are always stopped.

    python benchmarks/bench_inpaint.py                    # full run, a few minutes on 2 cores
    python benchmarks/bench_inpaint.py --requests 8 --sizes 512x512 --concurrency 1,4   # quick
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import inpaint_load  # noqa: E402
from benchmarks.harness import consecutive_free_ports, format_table, ratio, write_results  # noqa: E402
from lama_cleaner.inpaint_request import default_form  # noqa: E402
from tests.support.server_process import ServerProcess  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

CV2_FORM = default_form(
    hdStrategy="Resize",
    hdStrategyResizeLimit="1080",
    hdStrategyCropTrigerSize="512",
    hdStrategyCropMargin="128",
    sdSeed="42",
)
"""What the 1.2.5 front end sends for the cv2 model (docs/compatibility.md#frontend-defaults)."""


def make_job(width: int, height: int) -> tuple[bytes, bytes]:
    """A noisy JPEG photo stand-in and a PNG canvas mask covering a stroke of ~3% of the image."""
    rng = np.random.default_rng(width * 7 + height)
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) % 256], axis=-1)
    pixels = (pixels + rng.integers(0, 30, size=pixels.shape)) % 256
    image = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(image, format="JPEG", quality=90)
    mask = np.zeros((height, width, 4), dtype=np.uint8)
    mask[height // 2 - height // 40 : height // 2 + height // 40, width // 5 : 4 * width // 5] = 255
    mask_png = io.BytesIO()
    Image.fromarray(mask).save(mask_png, format="PNG")
    return image.getvalue(), mask_png.getvalue()


def _as_job(job: tuple[bytes, bytes]) -> inpaint_load.Job:
    return inpaint_load.Job("photo", job[0], "photo.jpg", "image/jpeg", job[1])


def post(url: str, job: tuple[bytes, bytes], timeout: float) -> float:
    """One request with the cv2 form; returns its latency in seconds (raises on a non-200 reply)."""
    return inpaint_load.post(url, _as_job(job), CV2_FORM, timeout)[0]


def measure(
    url: str, job: tuple[bytes, bytes], concurrency: int, count: int, deadline: float, timeout: float
) -> dict[str, Any]:
    """``count`` requests from ``concurrency`` client threads after one warm-up; stops early at ``deadline``."""
    stats = inpaint_load.measure(url, _as_job(job), CV2_FORM, concurrency, count, deadline=deadline, timeout=timeout)
    stats.pop("latencies_ms")  # this benchmark's JSON keeps its recorded shape
    return stats


def distributed_args(work: Path) -> list[str] | None:
    """Server arguments for distributed mode, or None when the plugin is not available here."""
    try:
        import lama_cleaner.plugins.distributed.plugin  # noqa: F401
    except ImportError as exc:
        print(f"distributed mode skipped: {exc}", file=sys.stderr)
        return None
    base = consecutive_free_ports(3)
    config = work / "distributed.toml"
    config.write_text(
        f'[distributed]\nscheduler_bind = "tcp://127.0.0.1:{base}"\ndata_dir = "{work / "journal"}"\nlocal_nodes = 1\n'
    )
    return ["--plugins", "distributed", "--config", str(config)]


def run_mode(
    mode: str,
    args: list[str],
    sizes: list[tuple[int, int]],
    levels: list[int],
    count: int,
    deadline: float,
    timeout: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ServerProcess(args, ready_timeout=120) as server:
        for width, height in sizes:
            job = make_job(width, height)
            # A distributed server answers /model before its node has joined: wait for a real reply.
            wait_for(lambda job=job: post(server.url, job, timeout), 120, f"a first {mode} /inpaint reply")
            for level in levels:
                if time.monotonic() > deadline:
                    print(f"time budget spent; skipping {mode} {width}x{height} c={level}", file=sys.stderr)
                    continue
                stats = measure(server.url, job, level, count, deadline, timeout)
                row = {"mode": mode, "size": f"{width}x{height}", "concurrency": level, **stats}
                rows.append(row)
                print(
                    format_table([row], ["mode", "size", "concurrency", "n", "p50", "p95", "req_per_s"]),
                    file=sys.stderr,
                )
    return rows


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (size, concurrency): what distributed mode adds to the median, and the ratios."""
    classic = {(r["size"], r["concurrency"]): r for r in rows if r["mode"] == "classic"}
    out = []
    for r in rows:
        base = classic.get((r["size"], r["concurrency"]))
        if r["mode"] != "distributed" or base is None:
            continue
        out.append(
            {
                "size": r["size"],
                "concurrency": r["concurrency"],
                "classic_p50_ms": base["p50"],
                "distributed_p50_ms": r["p50"],
                "added_p50_ms": r["p50"] - base["p50"],
                "p50_ratio": ratio(r["p50"], base["p50"]),
                "throughput_ratio": ratio(r["req_per_s"], base["req_per_s"]),
            }
        )
    return out


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        width, height = item.lower().split("x")
        sizes.append((int(width), int(height)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512x512,1920x1080", help="WxH list")
    parser.add_argument("--concurrency", default="1,4,8", help="client thread counts")
    parser.add_argument("--requests", type=int, default=24, help="measured requests per (size, concurrency)")
    parser.add_argument("--modes", default="classic,distributed", help="classic and/or distributed")
    parser.add_argument("--max-seconds", type=float, default=600, help="whole-run time budget")
    parser.add_argument("--timeout", type=float, default=120, help="per-request timeout in seconds")
    args = parser.parse_args(argv)
    sizes, levels = parse_sizes(args.sizes), [int(c) for c in args.concurrency.split(",")]
    deadline = time.monotonic() + args.max_seconds
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-inpaint-") as tmp:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            mode_args = [] if mode == "classic" else distributed_args(Path(tmp))
            if mode_args is None:
                skipped[mode] = "plugin not available"
                continue
            rows += run_mode(mode, mode_args, sizes, levels, args.requests, deadline, args.timeout)
    columns = ["mode", "size", "concurrency", "n", "mean", "p50", "p95", "max", "req_per_s"]
    print(format_table(rows, columns, title="POST /inpaint latency (ms), cv2 on CPU, loopback"))
    comparison = compare(rows)
    if comparison:
        print()
        print(format_table(comparison, title="distributed vs classic (added median latency in ms)"))
    path = write_results(
        "bench_inpaint",
        {
            "settings": {"sizes": args.sizes, "concurrency": levels, "requests": args.requests, "model": "cv2"},
            "results": rows,
            "comparison": comparison,
            "skipped": skipped,
        },
    )
    print(f"\nJSON written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
