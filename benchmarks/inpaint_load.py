"""Driving ``POST /inpaint`` at a server: photo-like jobs, the front end's form, concurrent clients.

Shared by ``bench_gpu.py`` and ``bench_upstream.py`` (``bench_inpaint.py`` keeps its own older job
so its recorded numbers stay comparable). Nothing here starts a server.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests
from PIL import Image

from benchmarks.harness import summarize
from lama_cleaner.inpaint_request import default_form
from tests.support.photo_like import photo_like, stroke_mask


@dataclass(frozen=True)
class Job:
    """One request's files: the image (``fmt``: png or jpeg) and the front end's RGBA canvas mask."""

    label: str
    image: bytes
    image_name: str
    mimetype: str
    mask: bytes


def make_job(width: int, height: int, fmt: str, seed: int = 0) -> Job:
    return make_jobs(width, height, fmt, 1, seed)[0]


def make_jobs(width: int, height: int, fmt: str, count: int, seed: int = 0) -> list[Job]:
    """``count`` jobs of the same picture and mask whose image files differ (in one corner): the
    same work per request, but every upload is new to the scheduler's journal, which stores a file
    it has seen before only once (a benchmark that repeats one image never pays that write)."""
    rgb = photo_like(height, width, seed)
    plane = stroke_mask(height, width, seed)
    mask = np.zeros((height, width, 4), np.uint8)
    mask[plane > 0] = 255
    mask_out = io.BytesIO()
    Image.fromarray(mask).save(mask_out, "PNG")
    jobs = []
    for i in range(count):
        variant = rgb.copy()
        if i:  # three flat 8x8 grey blocks count in base 16: they survive JPEG, one pixel does not
            variant[:8, :8] = i % 16 * 16 + 8
            variant[:8, 8:16] = i // 16 % 16 * 16 + 8
            variant[:8, 16:24] = i // 256 % 16 * 16 + 8
        out = io.BytesIO()
        if fmt == "jpeg":
            Image.fromarray(variant).save(out, "JPEG", quality=90)
        else:
            Image.fromarray(variant).save(out, "PNG")
        jobs.append(Job(f"{width}x{height} {fmt}", out.getvalue(), f"photo.{fmt}", f"image/{fmt}", mask_out.getvalue()))
    return jobs


def front_end_form(model: str) -> dict[str, str]:
    """The 34 fields the 1.2.5 front end sends, with its HD defaults for ``model``
    (docs/compatibility.md#frontend-defaults)."""
    if model == "cv2":
        return default_form(
            hdStrategy="Resize",
            hdStrategyResizeLimit="1080",
            hdStrategyCropTrigerSize="512",
            hdStrategyCropMargin="128",
            sdSeed="42",
        )
    return default_form(
        hdStrategy="Crop",
        hdStrategyResizeLimit="2048",
        hdStrategyCropTrigerSize="800",
        hdStrategyCropMargin="196",
        sdSeed="42",
    )


def post(url: str, job: Job, form: dict[str, str], timeout: float, path: str = "/inpaint") -> tuple[float, bytes]:
    """One request (to ``/inpaint`` unless ``path`` says otherwise): (latency in seconds, reply body);
    raises on a non-200 reply."""
    files = {"image": (job.image_name, job.image, job.mimetype), "mask": ("mask.png", job.mask, "image/png")}
    start = time.perf_counter()
    reply = requests.post(url + path, data=form, files=files, timeout=timeout)
    elapsed = time.perf_counter() - start
    if reply.status_code != 200:
        raise RuntimeError(f"{path} answered {reply.status_code}: {reply.text[:200]}")
    return elapsed, reply.content


def measure(
    url: str,
    job: Job,
    form: dict[str, str],
    concurrency: int,
    count: int,
    *,
    deadline: float,
    timeout: float,
    warmup: int = 1,
) -> dict[str, Any]:
    """``count`` requests from ``concurrency`` client threads after ``warmup`` unmeasured ones
    (0: the first requests after start are measured too); stops early at ``deadline``."""
    for _ in range(warmup):
        post(url, job, form, timeout)
    latencies: list[float] = []
    issued = iter(range(count))

    def client() -> None:
        for _ in issued:  # shared iterator: each request number is taken by exactly one thread
            if time.monotonic() > deadline:
                return
            latencies.append(post(url, job, form, timeout)[0])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - start
    if not latencies:
        raise RuntimeError("no request finished before the time budget ran out")
    stats = {k: v * 1000 if k != "n" else v for k, v in summarize(latencies).items()}
    return {
        **stats,
        "wall_s": wall,
        "req_per_s": len(latencies) / wall,
        "truncated": len(latencies) < count,
        "latencies_ms": [x * 1000 for x in latencies],
    }
