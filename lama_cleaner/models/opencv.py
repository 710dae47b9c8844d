"""The ``cv2`` model: OpenCV's classical inpainting (Navier-Stokes or Telea). No weights, CPU only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import ClientError
from .base import InpaintModel

if TYPE_CHECKING:
    from ..inpaint_request import InpaintRequest

FLAGS = {"INPAINT_NS": cv2.INPAINT_NS, "INPAINT_TELEA": cv2.INPAINT_TELEA}


class OpenCV2(InpaintModel):
    """Deterministic and dependency-free: the model the test-suite and CPU-only nodes rely on."""

    name = "cv2"
    resource_class = "cpu"
    runs_on_cpu = True
    memory_mb = 64
    thread_safe = True
    pad_mod = 1

    def forward(self, image_rgb: np.ndarray, mask: np.ndarray, req: InpaintRequest) -> np.ndarray:
        try:
            flag = FLAGS[req.cv2_flag]
        except KeyError:
            raise ClientError(f"Invalid value for cv2Flag: {req.cv2_flag}") from None
        if req.cv2_radius < 0:
            raise ClientError(f"Invalid value for cv2Radius: {req.cv2_radius}")
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        plane = np.ascontiguousarray(mask.reshape(mask.shape[0], mask.shape[1]))
        return cv2.inpaint(bgr, plane, inpaintRadius=req.cv2_radius, flags=flag)
