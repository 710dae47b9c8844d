"""The soak's tasks: deterministic inputs, and the image each one must come back as.

Task ``i`` of seed ``s`` gets its own random image (so a result handed to the wrong task cannot
pass for the right one), a mask, and its own ``cv2Radius``/``cv2Flag``. The expected output is
computed here with OpenCV directly (``cv2.inpaint`` on the same pixels), not with the product's
pipeline, so a result is checked against an independent oracle rather than against itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

FLAGS = {"INPAINT_NS": cv2.INPAINT_NS, "INPAINT_TELEA": cv2.INPAINT_TELEA}


@dataclass(frozen=True)
class TaskSpec:
    """One task of the soak: its idempotency key and everything needed to submit and check it."""

    seed: int
    index: int
    width: int = 40
    height: int = 32

    @property
    def key(self) -> str:
        return f"chaos-{self.seed}-{self.index}"

    @property
    def radius(self) -> int:
        return 1 + self.index % 7

    @property
    def flag(self) -> str:
        return "INPAINT_TELEA" if self.index % 2 else "INPAINT_NS"

    @cached_property
    def _pixels(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.index])
        image = rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8)
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        top = int(rng.integers(0, self.height // 2))
        left = int(rng.integers(0, self.width // 2))
        mask[top : top + self.height // 3, left : left + self.width // 3] = 255
        return image, mask

    @cached_property
    def image_png(self) -> bytes:
        return _png(self._pixels[0])

    @cached_property
    def mask_png(self) -> bytes:
        return _png(self._pixels[1])

    def form(self) -> dict[str, str]:
        """The fields sent besides the files (the server fills in the rest with the front end's defaults)."""
        return {"model": "cv2", "hdStrategy": "Original", "cv2Radius": str(self.radius), "cv2Flag": self.flag}

    def classic_form(self) -> dict[str, str]:
        """The same task as the 1.2.5 front end sends it to ``/inpaint`` (all fields; the server's model)."""
        from lama_cleaner.client import inpaint_form

        return inpaint_form("cv2", hdStrategy="Original", cv2Radius=self.radius, cv2Flag=self.flag)

    @cached_property
    def expected_digest(self) -> str:
        """sha256 of the expected pixels (BGR, as decoded from the result PNG)."""
        image, mask = self._pixels
        expected = cv2.inpaint(image, mask, inpaintRadius=self.radius, flags=FLAGS[self.flag])
        return pixel_digest(expected)


def pixel_digest(bgr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(bgr).tobytes() + repr(bgr.shape).encode()).hexdigest()


def result_digest(body: bytes) -> str | None:
    """sha256 of a result image's pixels, or None when the body is not an image."""
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    return None if decoded is None else pixel_digest(decoded)


def _png(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError("cv2 could not encode a PNG")
    return buf.tobytes()
