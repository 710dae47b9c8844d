"""The cv2 cases checked pixel for pixel against lama-cleaner 1.2.5 (issue 11, item 5).

Shared by ``scripts/gen_fidelity_fixtures.py``, which runs 1.2.5's own model code on them and records
the hash of each result, and ``tests/unit/core/test_fidelity_125.py``, which runs ours. Inputs are built
from seeds (``photo_like``), so the fixture file holds only hashes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .photo_like import photo_like, stroke_mask

FIXTURE = "tests/fixtures/cv2_fidelity_1.2.5.json"


@dataclass(frozen=True)
class FidelityCase:
    """One request: image size, input format (a JPEG round trip gives JPEG-like pixels), the HD fields."""

    name: str
    height: int
    width: int
    seed: int
    source: str  # "png" (pixels as generated) or "jpeg" (decoded from a quality-90 JPEG)
    hd_strategy: str
    crop_margin: int = 128
    crop_trigger: int = 800
    resize_limit: int = 1280
    cv2_flag: str = "INPAINT_NS"
    cv2_radius: int = 5
    edge_stroke: bool = False

    def form(self) -> dict[str, str]:
        """The front end's field names and values for this case's HD and cv2 settings."""
        return {
            "hdStrategy": self.hd_strategy,
            "hdStrategyCropMargin": str(self.crop_margin),
            "hdStrategyCropTrigerSize": str(self.crop_trigger),
            "hdStrategyResizeLimit": str(self.resize_limit),
            "cv2Flag": self.cv2_flag,
            "cv2Radius": str(self.cv2_radius),
        }

    def inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 image, (H, W) binary mask) as both servers decode them."""
        rgb = photo_like(self.height, self.width, self.seed)
        if self.source == "jpeg":
            out = io.BytesIO()
            Image.fromarray(rgb).save(out, "JPEG", quality=90)
            rgb = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB")).copy()
        mask = stroke_mask(self.height, self.width, self.seed)
        if self.edge_stroke:  # a stroke along the border: crop boxes must be shifted back inside
            thickness = max(2, self.width // 60)
            cv2.line(mask, (0, self.height - 3), (self.width // 3, self.height - 3), 255, thickness)
            cv2.line(mask, (self.width - 2, 0), (self.width - 2, self.height // 4), 255, thickness)
        return rgb, mask


def digest(result_bgr: np.ndarray) -> str:
    """sha256 of a result's shape and C-ordered uint8 bytes."""
    arr = np.ascontiguousarray(result_bgr, dtype=np.uint8)
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


CASES = (
    FidelityCase("resize-1280-png", 1080, 1920, 1, "png", "Resize", resize_limit=1280),
    FidelityCase("resize-1280-jpeg", 1080, 1920, 2, "jpeg", "Resize", resize_limit=1280),
    FidelityCase("resize-720-telea-jpeg", 1080, 1920, 3, "jpeg", "Resize", resize_limit=720, cv2_flag="INPAINT_TELEA"),
    FidelityCase("resize-1000-edges-png", 1080, 1920, 4, "png", "Resize", resize_limit=1000, edge_stroke=True),
    FidelityCase("crop-png", 1080, 1920, 5, "png", "Crop"),
    FidelityCase("crop-jpeg", 1080, 1920, 6, "jpeg", "Crop", crop_margin=196),
    FidelityCase("crop-edges-telea-jpeg", 1080, 1920, 7, "jpeg", "Crop", cv2_flag="INPAINT_TELEA", edge_stroke=True),
    FidelityCase("original-512-png", 512, 512, 8, "png", "Original"),
)
