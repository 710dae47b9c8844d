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
        torch = _torch()
        image = np.ascontiguousarray(image_rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
        plane = mask.reshape(1, mask.shape[0], mask.shape[1])
        mask_f = (plane > 0).astype(np.float32)
        with torch.no_grad():
            image_t = torch.from_numpy(image).unsqueeze(0).to(self.torch_device)
            mask_t = torch.from_numpy(mask_f).unsqueeze(0).to(self.torch_device)
            out = self.model(image_t, mask_t)
        result = out[0].permute(1, 2, 0).detach().cpu().numpy()
        result = np.clip(result * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(result[:, :, ::-1])

    def close(self) -> None:
        self.model = None
