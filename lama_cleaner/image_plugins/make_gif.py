"""MakeGIF: a looping before/after wipe animation of the original and the cleaned image
(docs/compatibility.md#image-plugins).

Needs no weights. 160 frames at 20 ms like upstream, built from 2 x 79 wipe frames plus two 1 s holds
(a hold is one frame with a long duration rather than 50 identical frames). All frames share one palette
computed from both images, so encoding is fast and colours do not flicker between frames.
"""

from __future__ import annotations

import io
import unicodedata
import urllib.parse
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .. import imaging
from ..tasks import TaskOutput, require_file, require_form
from .base import ImagePlugin

if TYPE_CHECKING:
    from ..config import Config
    from ..tasks import TaskRequest

MAX_SIDE = 600
WIPE_FRAMES = 79
FRAME_MS = 20
HOLD_MS = 1000
DIVIDER_PX = 2


def _fit(rgb: np.ndarray, size_wh: tuple[int, int]) -> Image.Image:
    img = Image.fromarray(rgb)
    return img if img.size == size_wh else img.resize(size_wh, Image.Resampling.LANCZOS)


def target_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def wipe_frames(before: np.ndarray, after: np.ndarray, steps: int = WIPE_FRAMES) -> list[np.ndarray]:
    """Frames where ``after`` is revealed from the left, behind a white divider line."""
    width = before.shape[1]
    frames = []
    for i in range(1, steps + 1):
        x = round(width * i / (steps + 1))
        frame = before.copy()
        frame[:, :x] = after[:, :x]
        frame[:, max(0, x - DIVIDER_PX // 2) : min(width, x + DIVIDER_PX // 2 + 1)] = 255
        frames.append(frame)
    return frames


def make_gif(original_rgb: np.ndarray, clean_rgb: np.ndarray) -> bytes:
    """Encode the looping animation: original, wipe to clean, clean, wipe back."""
    height, width = original_rgb.shape[:2]
    size = target_size(width, height)
    before = np.asarray(_fit(original_rgb, size))
    after = np.asarray(_fit(clean_rgb, size))
    frames = [before] + wipe_frames(before, after) + [after] + wipe_frames(after, before)
    durations = [HOLD_MS] + [FRAME_MS] * WIPE_FRAMES + [HOLD_MS] + [FRAME_MS] * WIPE_FRAMES
    palette = Image.fromarray(np.concatenate([before, after], axis=1)).quantize(colors=255)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return out.getvalue()


def content_disposition(filename: str) -> str:
    """``attachment; filename=...`` as Werkzeug writes it, plus ``filename*`` for non-ASCII names."""
    name = "".join(ch for ch in filename if ch >= " " and ch != "\x7f") or "download.gif"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    simple = ascii_name and all(ch.isalnum() or ch in "!#$%&'*+-.^_`|~" for ch in ascii_name)
    if simple:
        value = f"attachment; filename={ascii_name}"
    else:
        quoted = ascii_name.replace("\\", "\\\\").replace('"', '\\"')
        value = f'attachment; filename="{quoted}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    return value


class MakeGIF(ImagePlugin):
    name = "MakeGIF"
    resource_class = "cpu"
    thread_safe = True
    required_files = ("image", "clean_img")
    required_form = ("filename",)

    def process(self, request: TaskRequest, config: Config) -> TaskOutput:
        original = imaging.decode_image(require_file(request, "image"), "image")
        clean = imaging.decode_image(require_file(request, "clean_img"), "clean_img")
        body = make_gif(original.rgb, clean.rgb)
        filename = require_form(request, "filename")
        return TaskOutput(
            body=body, mimetype="image/gif", headers={"Content-Disposition": content_disposition(filename)}
        )
