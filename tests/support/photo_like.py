"""Synthetic images that compress like photographs, made from a seed (no downloads, no files).

Why: encoder speed and size depend on content. Flat colours or white noise would flatter one PNG setting
or another; a photograph has smooth shading, a few hard edges, textured regions and a little sensor
noise, which is what this builds. Deterministic for a given seed and numpy's PCG64 generator (stable
across numpy versions), so fidelity fixtures can be rebuilt from ``(seed, size)`` alone.
"""

from __future__ import annotations

import cv2
import numpy as np


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency shading: a coarse random grid scaled up bicubically, float32 in about [-1, 1]."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, max(2, cells * width // max(height, 1)), 3)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 RGB picture: shaded background, textured shapes with hard edges, sensor noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    img = base + 55.0 * _smooth_field(rng, height, width, 4) + 18.0 * _smooth_field(rng, height, width, 24)
    scale = max(height, width)
    for _ in range(12):
        colour = [float(c) for c in rng.uniform(0, 255, size=3)]
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            radius = int(rng.integers(scale // 40 + 1, scale // 6 + 2))
            cv2.circle(img, centre, radius, colour, thickness=-1, lineType=cv2.LINE_AA)
        else:
            low, high = scale // 30 + 1, scale // 5 + 2
            size = (int(rng.integers(low, high)), int(rng.integers(low, high)))
            box = (centre, size, float(rng.uniform(0, 180)))
            cv2.fillPoly(img, [cv2.boxPoints(box).astype(np.int32)], colour, lineType=cv2.LINE_AA)
    texture = 10.0 * _smooth_field(rng, height, width, max(8, scale // 6))
    noise = rng.normal(0.0, 2.5, size=(height, width, 3)).astype(np.float32)
    return np.clip(img + texture + noise, 0, 255).astype(np.uint8)


def stroke_mask(height: int, width: int, seed: int = 0, strokes: int = 3) -> np.ndarray:
    """An (H, W) uint8 mask of a few thick brush strokes, 255 inside, as the front end draws them."""
    rng = np.random.default_rng(seed + 7919)
    mask = np.zeros((height, width), np.uint8)
    thickness = max(2, max(height, width) // 60)
    for _ in range(strokes):
        points = np.stack(
            [rng.integers(width // 10, width - width // 10, 4), rng.integers(height // 10, height - height // 10, 4)],
            axis=1,
        ).astype(np.int32)
        cv2.polylines(mask, [points], isClosed=False, color=255, thickness=thickness)
    return mask
