"""The abstract inpainting model and the one place the HD strategies are applied.

A concrete model only implements ``forward`` on an already padded image; ``__call__`` chooses Original,
Resize or Crop (docs/compatibility.md#hd-strategies), pads, blends and guarantees that pixels outside the mask are the
input's pixels, bit for bit. Class attributes describe the model to the registry, the manager and the
distributed router (``resource_class``, ``memory_mb``) without instantiating it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import cv2
import numpy as np

from ..errors import TaskCancelled
from ..tasks import CancelCheck, Progress, ProgressCallback, ignore_progress, never_cancelled
from . import hd_strategy as hd

if TYPE_CHECKING:
    from ..config import Config
    from ..inpaint_request import InpaintRequest


class InpaintModel:
    """Base of every model; subclasses set the class attributes and implement ``forward``."""

    name: ClassVar[str] = ""
    resource_class: ClassVar[str] = "gpu"
    """Queue family the work needs: ``gpu`` or ``cpu`` (used by the distributed router)."""
    runs_on_cpu: ClassVar[bool] = False
    """True when a ``gpu``-class model still runs acceptably on a CPU (small weights: lama and the
    other erase models). A server started with ``--device cpu`` then routes it to the ``cpu`` queue
    instead of waiting for a GPU node. False (the safe default) for the diffusion family."""
    reports_steps: ClassVar[bool] = False
    """True for models that emit per-step progress (the SD family)."""
    memory_mb: ClassVar[int] = 0
    thread_safe: ClassVar[bool] = False
    """True when concurrent calls on one instance are safe (cv2: no state between calls, OpenCV
    releases the GIL). Classic mode then runs them in parallel as upstream does; other models are
    serialised per model (docs/compatibility.md#concurrency)."""
    """Approximate memory the loaded model needs (weights + typical activations)."""
    pad_mod: ClassVar[int] = 8
    min_size: ClassVar[int | None] = None
    pad_to_square: ClassVar[bool] = False
    supports_hd: ClassVar[bool] = True
    """Whether the HD strategy fields apply (False: the model handles sizes itself)."""

    @classmethod
    def is_available(cls, config: Config) -> tuple[bool, str]:
        """(True, "") when this server can run the model; else (False, a reason shown to the user)."""
        return True, ""

    @classmethod
    def is_downloaded(cls, config: Config) -> bool:
        """Answer of ``/model_downloaded/<name>``: weights present, nothing to fetch on switch."""
        return True

    def __init__(self, device: str, config: Config) -> None:
        self.device = device
        self.config = config

    def close(self) -> None:
        """Release resources held by the model (called when the manager drops it)."""

    def warm_up(self) -> None:
        """Pay the model's one-time costs now rather than in the first request: called by the model
        manager right after loading, before the model is offered to anyone (a node preloading it, a
        classic server starting). Nothing by default: most models have no lazy initialisation."""

    # ------------------------------------------------------------------ to implement
    def forward(self, image_rgb: np.ndarray, mask: np.ndarray, req: InpaintRequest) -> np.ndarray:
        """Inpaint a padded image: RGB uint8 (H, W, 3) + mask uint8 (H, W, 1) -> BGR uint8 (H, W, 3)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared behaviour
    def _forward_unpadded(self, image_rgb: np.ndarray, mask: np.ndarray, req: InpaintRequest) -> np.ndarray:
        """``forward`` on the padded image, cropped back to the input's size (BGR uint8)."""
        height, width = image_rgb.shape[:2]
        pad_image = hd.pad_to_modulo(image_rgb, self.pad_mod, square=self.pad_to_square, min_size=self.min_size)
        pad_mask = hd.pad_to_modulo(mask, self.pad_mod, square=self.pad_to_square, min_size=self.min_size)
        return self.forward(pad_image, pad_mask, req)[:height, :width, :]

    def _pad_forward(self, image_rgb: np.ndarray, mask: np.ndarray, req: InpaintRequest) -> np.ndarray:
        result = self._forward_unpadded(image_rgb, mask, req)
        return hd.blend(result, cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR), mask)

    def __call__(
        self,
        image_rgb: np.ndarray,
        mask: np.ndarray,
        req: InpaintRequest,
        progress: ProgressCallback = ignore_progress,
        cancelled: CancelCheck = never_cancelled,
    ) -> np.ndarray:
        """Inpaint a full image with the requested HD strategy; returns BGR uint8 of the same size."""
        if mask.ndim == 2:
            mask = mask[:, :, None]
        original_bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)
        height, width = image_rgb.shape[:2]
        longer = max(height, width)
        strategy = req.hd_strategy if self.supports_hd else "Original"

        if strategy == "Crop" and longer > req.hd_strategy_crop_triger_size:
            result = original_bgr.copy()
            boxes = hd.mask_boxes(mask, req.hd_strategy_crop_margin)
            for i, (left, top, right, bottom) in enumerate(boxes):
                if cancelled():
                    raise TaskCancelled()
                crop = self._pad_forward(image_rgb[top:bottom, left:right], mask[top:bottom, left:right], req)
                result[top:bottom, left:right] = crop
                progress(Progress(percent=100.0 * (i + 1) / len(boxes)))
        elif strategy == "Resize" and longer > req.hd_strategy_resize_limit:
            small_image = hd.resize_longer_side(image_rgb, req.hd_strategy_resize_limit)
            small_mask = hd.resize_longer_side(mask, req.hd_strategy_resize_limit)
            if cancelled():
                raise TaskCancelled()
            # 1.2.5's arithmetic, step for step: the blend with the scaled-down (no longer binary) mask
            # stays float64 through the upscale, so the pixels match it exactly (docs/compatibility.md).
            small = self._forward_unpadded(small_image, small_mask, req)
            small = hd.blend_float64(small, small_image[:, :, ::-1], small_mask)
            progress(Progress(percent=100.0))
            with np.errstate(invalid="ignore", over="ignore"):
                return hd.upscale_keeping_unmasked(small, original_bgr, mask)
        else:
            if cancelled():
                raise TaskCancelled()
            result = self._pad_forward(image_rgb, mask, req)
            progress(Progress(percent=100.0))
        # Whatever the strategy did, pixels outside the mask are the input's own pixels (with a binary
        # mask the blend already made them so).
        if hd.is_binary(mask):
            return result
        return hd.keep_unmasked(result, original_bgr, mask)
