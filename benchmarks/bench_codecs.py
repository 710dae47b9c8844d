#!/usr/bin/env python3
"""Encode speed against size for PNG replies, plus the other per-request image stages.

Why: the PNG encoder was most of a request's time (issue 11, item 3). Every candidate is lossless, so
the choice is speed against bytes; this measures both on synthetic photo-like images
(``tests/support/photo_like.py``: shading, edges, texture, sensor noise), the same after a JPEG round
trip (smoother, like an upload that was a JPEG once) and a posterised "screenshot" (large flat areas,
where zlib's strategies differ most). It also times decoding, the mask binarisation and the final
blend, so the table shows what is left of a request besides the model.

    python benchmarks/bench_codecs.py                 # 512x512 and 1920x1080, ~1-2 min on 2 cores
    python benchmarks/bench_codecs.py --quick         # fewer repeats, 512x512 only

Prints one table per size and writes ``benchmarks/results/bench_codecs-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import format_table, summarize, time_calls, write_results  # noqa: E402
from lama_cleaner import imaging  # noqa: E402
from lama_cleaner.models import hd_strategy as hd  # noqa: E402
from lama_cleaner.png_encoding import PngSettings  # noqa: E402
from tests.support.photo_like import photo_like, stroke_mask  # noqa: E402

CANDIDATES: list[tuple[str, PngSettings]] = [
    ("pillow (1.2.5)", PngSettings(encoder="pillow")),
    ("opencv 1 default all", PngSettings(compression=1, strategy="default", filter="all")),
    ("opencv 3 default all", PngSettings(compression=3, strategy="default", filter="all")),
    ("opencv 6 default all", PngSettings(compression=6, strategy="default", filter="all")),
    ("opencv 1 rle all", PngSettings(compression=1, strategy="rle", filter="all")),
    ("opencv 1 rle fast", PngSettings(compression=1, strategy="rle", filter="fast")),
    ("opencv 1 rle sub (default)", PngSettings()),
    ("opencv 1 rle up", PngSettings(compression=1, strategy="rle", filter="up")),
    ("opencv 1 rle paeth", PngSettings(compression=1, strategy="rle", filter="paeth")),
    ("opencv 1 huffman sub", PngSettings(compression=1, strategy="huffman", filter="sub")),
    ("opencv 1 default sub", PngSettings(compression=1, strategy="default", filter="sub")),
    ("opencv 1 filtered sub", PngSettings(compression=1, strategy="filtered", filter="sub")),
]


def _pillow_png(rgb: np.ndarray, level: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG", compress_level=level)
    return out.getvalue()


def images(height: int, width: int) -> dict[str, np.ndarray]:
    photo = photo_like(height, width, seed=11)
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "JPEG", quality=90)
    jpeg = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB")).copy()
    flat = ((photo_like(height, width, seed=12) // 48) * 48).astype(np.uint8)  # posterised: screenshot-like
    return {"photo": photo, "photo via jpeg": jpeg, "flat": flat}


def encode_rows(height: int, width: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for kind, rgb in images(height, width).items():
        baseline = None
        extra = [("pillow level 1", lambda rgb=rgb: _pillow_png(rgb, 1))]
        runs = [
            (name, lambda rgb=rgb, s=settings: imaging.encode_image(rgb, "png", quality=95, png=s))
            for name, settings in CANDIDATES
        ] + extra
        for name, fn in runs:
            body = fn()
            times = summarize([t * 1000 for t in time_calls(fn, repeat, warmup=1)])
            if baseline is None:
                baseline = (times["p50"], len(body))
            rows.append(
                {
                    "size": f"{width}x{height}",
                    "image": kind,
                    "encoder": name,
                    "p50_ms": times["p50"],
                    "bytes": len(body),
                    "speedup": baseline[0] / times["p50"],
                    "size_vs_pillow": len(body) / baseline[1],
                }
            )
    return rows


def stage_rows(height: int, width: int, repeat: int) -> list[dict[str, Any]]:
    """The other image stages of a request at this size, for scale."""
    rgb = photo_like(height, width, seed=13)
    mask = stroke_mask(height, width, seed=13)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, "JPEG", quality=90)
    png = imaging.encode_image(rgb, "png", quality=95)
    mask_png = io.BytesIO()
    Image.fromarray(np.dstack([mask] * 4)).save(mask_png, "PNG")
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    other = np.ascontiguousarray(bgr[::-1])
    stages = {
        "decode jpeg": lambda: imaging.decode_image(jpeg.getvalue()),
        "decode png": lambda: imaging.decode_image(png),
        "decode mask (rgba png)": lambda: imaging.decode_mask(mask_png.getvalue()),
        "blend (binary mask)": lambda: hd.blend(other, bgr, mask[:, :, None]),
        "keep_unmasked": lambda: hd.keep_unmasked(other, bgr, mask[:, :, None]),
        "encode jpeg q95": lambda: imaging.encode_image(rgb, "jpeg", quality=95),
    }
    rows = []
    for name, fn in stages.items():
        times = summarize([t * 1000 for t in time_calls(fn, repeat, warmup=1)])
        rows.append({"size": f"{width}x{height}", "stage": name, "p50_ms": times["p50"], "mean_ms": times["mean"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, 512x512 only")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [(512, 512)] if args.quick else [(512, 512), (1080, 1920)]
    repeat = 3 if args.quick else args.repeat
    encoders, stages = [], []
    for height, width in sizes:
        rows = encode_rows(height, width, repeat)
        encoders += rows
        print(format_table(rows, title=f"PNG encoders at {width}x{height} (speedup and size against Pillow's)"))
        more = stage_rows(height, width, repeat)
        stages += more
        print(format_table(more, title=f"Other image stages at {width}x{height}"))
    path = write_results("bench_codecs", {"encoders": encoders, "stages": stages, "repeat": repeat}, args.results_dir)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
