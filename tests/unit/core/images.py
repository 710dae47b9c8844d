"""Small image factories for the core unit tests (deterministic pixels, real encoders)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin


def pixels(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth-ish deterministic content (gradients plus noise) so inpainting has something to do."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), (xx + yy) % 256], axis=-1)
    noise = rng.randint(0, 40, size=(height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    if channels == 4:
        alpha = rng.randint(0, 256, size=(height, width, 1)).astype(np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)
    return rgb


def encode(
    arr: np.ndarray,
    fmt: str = "PNG",
    *,
    orientation: int | None = None,
    parameters: str | None = None,
    **kwargs: object,
) -> bytes:
    img = Image.fromarray(arr)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010F] = "TestMake"  # Make: proves other tags survive
        kwargs["exif"] = exif.tobytes()
    if parameters is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
        kwargs["pnginfo"] = info
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def mask_bytes(height: int, width: int, boxes: list[tuple[int, int, int, int]], *, rgba: bool = True) -> bytes:
    """A front-end style mask: transparent background, white strokes in the given (l, t, r, b) boxes."""
    arr = np.zeros((height, width, 4 if rgba else 3), np.uint8)
    for left, top, right, bottom in boxes:
        arr[top:bottom, left:right] = 255
    return encode(arr, "PNG")


def mask_array(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    arr = np.zeros((height, width), np.uint8)
    for left, top, right, bottom in boxes:
        arr[top:bottom, left:right] = 255
    return arr


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img
