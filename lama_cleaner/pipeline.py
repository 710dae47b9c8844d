"""From a raw ``TaskRequest`` to encoded reply bytes: the one code path classic and distributed modes share.

``validate_task`` is cheap (form coercion and image headers only) so the web server can answer bad input
with a 400 before queueing anything. ``execute_task`` does the real work; for a given request and model
it is deterministic (cv2 is bit-for-bit), which is what makes distributed replies identical to local ones.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from . import imaging
from .errors import OOM_MARKER, ClientError, InferenceError, LamaCleanerError, OutOfMemory
from .image_plugins.builtin import PLUGIN_CLASSES
from .inpaint_request import InpaintRequest
from .png_encoding import PngSettings
from .tasks import (
    CancelCheck,
    ProgressCallback,
    TaskOutput,
    TaskRequest,
    ignore_progress,
    never_cancelled,
    require_file,
)

if TYPE_CHECKING:
    from .config import Config
    from .image_plugins.registry import ImagePluginRegistry
    from .models.manager import ModelManager


def validate_task(request: TaskRequest, config: Config, image_plugins: ImagePluginRegistry | None = None) -> None:
    """Reject a request that can never succeed, reading only form strings and image headers.

    Raises ``ClientError`` (400) with upstream's texts where upstream has one, ``NotFound`` for an
    unknown plugin when ``image_plugins`` is given, and ``TooLarge`` (413) for an upload with more
    pixels than ``server.max_image_pixels``, checked first, before anything reads further.
    """
    for field, data in request.files.items():
        imaging.check_pixels(data, field, config.server.max_image_pixels)
    if request.kind == "inpaint":
        InpaintRequest.from_form(request.form, rng=random.Random(0))
        image_hw = imaging.upright_size(require_file(request, "image"), "image")
        mask_hw = imaging.upright_size(require_file(request, "mask"), "mask")
        if mask_hw != image_hw:
            raise ClientError(imaging.mask_mismatch_message(mask_hw, image_hw))
    elif request.kind == "plugin":
        if image_plugins is not None:
            image_plugins.get(request.name).validate_request(request)
        elif request.name in PLUGIN_CLASSES:
            PLUGIN_CLASSES[request.name].validate_request(request)
        else:
            imaging.upright_size(require_file(request, "image"), "image")
    else:
        raise ClientError(f"Unknown task kind: {request.kind}")


def map_runtime_error(exc: BaseException) -> LamaCleanerError:
    """Upstream's mapping: a CUDA OOM text becomes ``CUDA out of memory``; other errors keep their text."""
    if isinstance(exc, LamaCleanerError):
        return exc
    text = str(exc)
    if OOM_MARKER in text:
        return OutOfMemory()
    return InferenceError(text or type(exc).__name__)


def execute_task(
    request: TaskRequest,
    *,
    models: ModelManager,
    image_plugins: ImagePluginRegistry,
    config: Config,
    progress: ProgressCallback = ignore_progress,
    cancelled: CancelCheck = never_cancelled,
) -> TaskOutput:
    """Run one task to its encoded reply; raises the exceptions of ``lama_cleaner.errors`` only."""
    try:
        if request.kind == "inpaint":
            return _inpaint(request, models, config, progress, cancelled)
        if request.kind == "plugin":
            return image_plugins.get(request.name).run(request, config)
        raise ClientError(f"Unknown task kind: {request.kind}")
    except LamaCleanerError:
        raise
    except Exception as exc:  # model/plugin failures: report their text, never an unexplained 500
        raise map_runtime_error(exc) from exc
    finally:
        models.release_cache()


def _inpaint(
    request: TaskRequest, models: ModelManager, config: Config, progress: ProgressCallback, cancelled: CancelCheck
) -> TaskOutput:
    req = InpaintRequest.from_form(request.form)
    source = imaging.decode_image(require_file(request, "image"), "image")
    mask = imaging.decode_mask(require_file(request, "mask"), "mask")
    if mask.shape[:2] != source.size:
        raise ClientError(imaging.mask_mismatch_message(mask.shape[:2], source.size))
    # An empty name means "the current model" (classic mode). The reference taken here stays valid even if
    # a switch replaces the model meanwhile. Only the model call is guarded (its per-model lock, nothing for
    # a thread-safe model, or one lock per device on a pipelined node); decoding and encoding above and
    # below run in parallel.
    with models.running(request.name or None, cancelled) as model:
        result_bgr = model(source.rgb, mask[:, :, None], req, progress, cancelled)
    body = imaging.encode_like(
        result_bgr[:, :, ::-1], source, quality=config.quality, png=PngSettings.from_config(config)
    )
    return TaskOutput(body=body, mimetype=imaging.mimetype(source.format), headers={"X-Seed": str(req.sd_seed)})
