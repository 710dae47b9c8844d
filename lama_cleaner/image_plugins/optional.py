"""Plugins that need third-party packages and weights: offered only when both are present here.

Nothing here imports those packages at module import time and nothing downloads: ``availability``
checks that the package is importable and the weight file is already in the torch-hub checkpoints
directory (upstream's cache), and ``load`` imports and builds the network on first use. These runners
follow the packages' public APIs; they are exercised only where the packages are installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .. import imaging
from ..errors import ClientError
from ..models.device import has_cuda
from ..models.download import hub_dir
from ..png_encoding import PngSettings
from ..tasks import TaskOutput, require_file, require_form
from .base import ImagePlugin, device_resource_class, parse_float_field

if TYPE_CHECKING:
    from ..config import Config
    from ..tasks import TaskRequest


def checkpoints_dir() -> Path:
    return hub_dir() / "checkpoints"


def _missing(packages: tuple[str, ...], weight: Path | None, device: str = "cpu") -> str:
    """Empty when everything is present, else the reason the plugin cannot be offered."""
    absent = [p for p in packages if importlib.util.find_spec(p) is None]
    if absent:
        return f"Python package(s) not installed: {', '.join(absent)}"
    if weight is not None and not weight.exists():
        return f"weights not found at {weight} (this server never downloads at run time)"
    if device.startswith("cuda") and not has_cuda():
        return "its device is cuda but CUDA is not available"
    return ""


def _check(reason: str) -> tuple[bool, str]:
    return (not reason, reason)


def _reply_like_input(request: TaskRequest, rgb: np.ndarray, config: Config) -> TaskOutput:
    """Encode a plugin result in the input's format with its alpha (resized), EXIF and parameters."""
    source = imaging.decode_image(require_file(request, "image"), "image")
    body = imaging.encode_like(rgb, source, quality=config.quality, png=PngSettings.from_config(config))
    return TaskOutput(body=body, mimetype=imaging.mimetype(source.format))


def _png_cutout(source: imaging.DecodedImage, rgba: np.ndarray, config: Config) -> TaskOutput:
    body = imaging.encode_image(
        rgba,
        "png",
        quality=config.quality,
        exif=source.exif,
        parameters=source.parameters,
        png=PngSettings.from_config(config),
    )
    return TaskOutput(body=body, mimetype="image/png")


# ---------------------------------------------------------------------------------------------- RemoveBG
class RemoveBG(ImagePlugin):
    """Background removal with rembg's u2net (always on CPU)."""

    name = "RemoveBG"
    resource_class = "cpu"

    @staticmethod
    def weight_path() -> Path:
        return Path(os.environ.get("U2NET_HOME") or checkpoints_dir()) / "u2net.onnx"

    @classmethod
    def availability(cls, config: Config) -> tuple[bool, str]:
        return _check(_missing(("rembg",), cls.weight_path()))

    def load(self) -> None:
        os.environ.setdefault("U2NET_HOME", str(self.weight_path().parent))
        from rembg import new_session

        self._session: Any = new_session("u2net")

    def process(self, request: TaskRequest, config: Config) -> TaskOutput:
        from PIL import Image
        from rembg import remove

        source = imaging.decode_image(require_file(request, "image"), "image")
        cut = remove(Image.fromarray(source.rgb), session=self._session)
        rgba = np.asarray(cut.convert("RGBA"))
        return _png_cutout(source, rgba, config)


# ---------------------------------------------------------------------------------------------- AnimeSeg
class AnimeSeg(ImagePlugin):
    """Listed so enabling it gives a clear reason: its ISNet network code is not bundled here."""

    name = "AnimeSeg"
    resource_class = "cpu"

    @classmethod
    def availability(cls, config: Config) -> tuple[bool, str]:
        return False, "AnimeSeg's network code (ISNet) is not bundled with this server"


# ---------------------------------------------------------------------------------------------- RealESRGAN
REALESRGAN_FILES = {
    "realesr-general-x4v3": "realesr-general-x4v3.pth",
    "RealESRGAN_x4plus": "RealESRGAN_x4plus.pth",
    "RealESRGAN_x4plus_anime_6B": "RealESRGAN_x4plus_anime_6B.pth",
}


class RealESRGAN(ImagePlugin):
    name = "RealESRGAN"
    required_form = ("upscale",)

    @classmethod
    def resource_class_for(cls, config: Config) -> str:
        return device_resource_class(config.realesrgan_device)

    @classmethod
    def weight_path(cls, config: Config) -> Path:
        return checkpoints_dir() / REALESRGAN_FILES.get(config.realesrgan_model, f"{config.realesrgan_model}.pth")

    @classmethod
    def availability(cls, config: Config) -> tuple[bool, str]:
        reason = _missing(("realesrgan", "basicsr"), cls.weight_path(config), config.realesrgan_device)
        return _check(reason)

    def load(self) -> None:
        from basicsr.archs.rrdbnet_arch import RRDBNet
        from realesrgan import RealESRGANer
        from realesrgan.archs.srvgg_arch import SRVGGNetCompact

        model_name = self.config.realesrgan_model
        if model_name == "realesr-general-x4v3":
            net: Any = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
        else:
            blocks = 6 if model_name.endswith("anime_6B") else 23
            net = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=blocks, num_grow_ch=32, scale=4)
        device = self.config.realesrgan_device
        self.upsampler = RealESRGANer(
            scale=4,
            model_path=str(self.weight_path(self.config)),
            model=net,
            half=device.startswith("cuda") and not self.config.realesrgan_no_half,
            tile=512,
            device=device,
        )

    @classmethod
    def validate_request(cls, request: TaskRequest) -> None:
        super().validate_request(request)
        upscale = parse_float_field(request, "upscale")
        if not 0 < upscale <= 8:
            raise ClientError(f"Invalid value for upscale: {request.form.get('upscale')}")

    def process(self, request: TaskRequest, config: Config) -> TaskOutput:
        source = imaging.decode_image(require_file(request, "image"), "image")
        upscale = parse_float_field(request, "upscale")
        out_bgr, _ = self.upsampler.enhance(np.ascontiguousarray(source.rgb[:, :, ::-1]), outscale=upscale)
        return _reply_like_input(request, np.ascontiguousarray(out_bgr[:, :, ::-1]), config)


# ---------------------------------------------------------------------------------------------- GFPGAN family
class _FaceRestorer(ImagePlugin):
    weight_file = ""
    arch = "clean"
    device_field = "gfpgan_device"

    @classmethod
    def resource_class_for(cls, config: Config) -> str:
        return device_resource_class(getattr(config, cls.device_field))

    @classmethod
    def availability(cls, config: Config) -> tuple[bool, str]:
        device = getattr(config, cls.device_field)
        return _check(_missing(("gfpgan", "facexlib"), checkpoints_dir() / cls.weight_file, device))

    def load(self) -> None:
        from gfpgan import GFPGANer

        self.restorer = GFPGANer(
            model_path=str(checkpoints_dir() / self.weight_file),
            upscale=1,
            arch=self.arch,
            channel_multiplier=2,
            device=getattr(self.config, self.device_field),
            bg_upsampler=None,
        )

    def process(self, request: TaskRequest, config: Config) -> TaskOutput:
        source = imaging.decode_image(require_file(request, "image"), "image")
        bgr = np.ascontiguousarray(source.rgb[:, :, ::-1])
        _, _, out_bgr = self.restorer.enhance(
            bgr, has_aligned=False, only_center_face=False, paste_back=True, weight=0.5
        )
        return _reply_like_input(request, np.ascontiguousarray(out_bgr[:, :, ::-1]), config)


class GFPGAN(_FaceRestorer):
    name = "GFPGAN"
    weight_file = "GFPGANv1.4.pth"
    arch = "clean"
    device_field = "gfpgan_device"


class RestoreFormer(_FaceRestorer):
    name = "RestoreFormer"
    weight_file = "RestoreFormer.pth"
    arch = "RestoreFormer"
    device_field = "restoreformer_device"


# ---------------------------------------------------------------------------------------------- InteractiveSeg
SAM_FILES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
SEG_COLOUR = (255, 203, 0, 186)


def parse_clicks(raw: str) -> tuple[np.ndarray, np.ndarray]:
    """``[[x, y, label, index], ...]`` -> point coordinates and labels (index is ignored)."""
    try:
        clicks = json.loads(raw)
        points = np.array([[float(c[0]), float(c[1])] for c in clicks], dtype=np.float32)
        labels = np.array([int(c[2]) for c in clicks], dtype=np.int64)
    except (ValueError, TypeError, IndexError, KeyError):
        raise ClientError(f"Invalid value for clicks: {raw}") from None
    if len(points) == 0:
        raise ClientError("Invalid value for clicks: no clicks")
    return points, labels


def seg_overlay(mask: np.ndarray) -> np.ndarray:
    """The front end's yellow overlay: dilated mask pixels coloured, everything else transparent."""
    dilated = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8), iterations=1) > 0
    out = np.zeros((*mask.shape[:2], 4), np.uint8)
    out[dilated] = SEG_COLOUR
    return out


class InteractiveSeg(ImagePlugin):
    """Segment Anything clicks -> mask overlay; the per-image embedding is cached under the plugin lock."""

    name = "InteractiveSeg"
    required_form = ("clicks",)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._embedded: bytes | None = None

    @classmethod
    def resource_class_for(cls, config: Config) -> str:
        return device_resource_class(config.interactive_seg_device)

    @classmethod
    def availability(cls, config: Config) -> tuple[bool, str]:
        weight = checkpoints_dir() / SAM_FILES[config.interactive_seg_model]
        return _check(_missing(("segment_anything",), weight, config.interactive_seg_device))

    def load(self) -> None:
        from segment_anything import SamPredictor, sam_model_registry

        weight = checkpoints_dir() / SAM_FILES[self.config.interactive_seg_model]
        sam = sam_model_registry[self.config.interactive_seg_model](checkpoint=str(weight))
        self.predictor = SamPredictor(sam.to(self.config.interactive_seg_device))

    def process(self, request: TaskRequest, config: Config) -> TaskOutput:
        from PIL import Image

        data = require_file(request, "image")
        points, labels = parse_clicks(require_form(request, "clicks"))
        key = hashlib.md5(data).digest()
        if key != self._embedded:  # safe: ``run`` holds this plugin's lock
            self.predictor.set_image(imaging.decode_image(data, "image").rgb)
            self._embedded = key
        masks, _, _ = self.predictor.predict(point_coords=points, point_labels=labels, multimask_output=False)
        overlay = seg_overlay(np.asarray(masks[0]))
        out = io.BytesIO()
        Image.fromarray(overlay).save(out, format="PNG", compress_level=0)
        return TaskOutput(body=out.getvalue(), mimetype="image/png")
