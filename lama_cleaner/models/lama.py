"""Big-LaMa, loaded as TorchScript through the upstream cache / URL / md5 rules (docs/compatibility.md#weights).

The TorchScript module's contract: ``forward(image float[1,3,H,W] in 0..1, mask float[1,1,H,W] in {0,1})
-> float[1,3,H,W] in 0..1``. Inputs are padded to a multiple of 8 by the base class.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InferenceError
from . import download
from .base import InpaintModel

if TYPE_CHECKING:
    from ..config import Config
    from ..inpaint_request import InpaintRequest

LAMA_WEIGHTS = download.WeightFile(
    env_prefix="LAMA_MODEL",
    url="https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
    md5="e3aa4aaa15225a33ec84f9f4bc47e500",
)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


class LaMa(InpaintModel):
    name = "lama"
    resource_class = "gpu"
    runs_on_cpu = True
    memory_mb = 2500
    pad_mod = 8

    @classmethod
    def is_available(cls, config: Config) -> tuple[bool, str]:
        if _torch() is None:
            return False, "lama needs PyTorch, which is not installed on this server; use cv2 or install torch"
        return True, ""

    @classmethod
    def is_downloaded(cls, config: Config) -> bool:
        return download.is_downloaded(LAMA_WEIGHTS)

    def __init__(self, device: str, config: Config) -> None:
        super().__init__(device, config)
        torch = _torch()
        if torch is None:
            raise InferenceError(self.is_available(config)[1])
        # Upstream keeps LaMa off MPS (it is not in the MPS model list).
        self.torch_device = torch.device("cpu" if device == "mps" else device)
        path = download.ensure_weight(LAMA_WEIGHTS)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is big-lama's format
                model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            if download.discard_if_corrupt(path, LAMA_WEIGHTS):
                raise download.ModelDownloadError(
                    f"The cached LaMa weights at {path} were corrupt and have been deleted; "
                    "switch to lama again to download them afresh"
                ) from exc
            raise InferenceError(f"Failed to load LaMa weights from {path}: {exc}") from exc
        self.model = model.to(self.torch_device).eval()
        self._byte_range = torch.tensor(255.0, device=self.torch_device)
        """The divisor that turns bytes into 0..1, made once on the device (see ``forward``)."""

    WARM_UP_SIZE = 256
    WARM_UP_CALLS = 2

    def warm_up(self) -> None:
        """Two calls on a blank 256x256 image with a square hole. TorchScript profiles its graph on the
        first call and optimises it on the second, and on a GPU the first convolution also sets up
        cuDNN: costs the first request paid otherwise. On the 2-core CPU box, with a 0.45 s model, the
        first 512x512 request through a local node took 250-310 ms longer than the next ones without
        it and 45-185 ms longer with it (classic: 100-200 ms, then none)."""
        torch = _torch()
        size = self.WARM_UP_SIZE
        image = torch.zeros(1, 3, size, size, device=self.torch_device)
        mask = torch.zeros(1, 1, size, size, device=self.torch_device)
        mask[:, :, size // 4 : size // 2, size // 4 : size // 2] = 1.0
        with torch.no_grad():
            for _ in range(self.WARM_UP_CALLS):
                self.model(image, mask)
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

    def forward(self, image_rgb: np.ndarray, mask: np.ndarray, req: InpaintRequest) -> np.ndarray:
        """The image and mask travel to the device as uint8 and are converted there, and the result
        comes back as uint8: a quarter of float32's bytes each way, and no float arithmetic on the
        host while the task holds the device (on issue 11's GPU, 1.2.5's host-side conversions and
        copies added 33 ms to a 58 ms 1080p call). The arithmetic is 1.2.5's: ``x / 255`` as a true
        division (a 0-dim tensor divisor: CUDA turns a Python-number divisor into a multiplication by
        its reciprocal, off by one bit for half the byte values), then ``clip(out * 255, 0, 255)``
        truncated to uint8."""
        torch = _torch()
        device = self.torch_device
        height, width = mask.shape[0], mask.shape[1]
        with torch.no_grad():
            image = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(device)
            image = image.permute(2, 0, 1).unsqueeze(0).contiguous().to(torch.float32)
            image = image.div_(self._byte_range)
            plane = torch.from_numpy(np.ascontiguousarray(mask.reshape(height, width))).to(device)
            mask_t = (plane > 0).to(torch.float32).reshape(1, 1, height, width)
            out = self.model(image, mask_t)
            bgr = (out[0] * 255.0).clamp_(0, 255).to(torch.uint8).flip(0).permute(1, 2, 0).contiguous()
            return bgr.cpu().numpy()

    def close(self) -> None:
        self.model = None
