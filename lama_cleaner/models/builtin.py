"""Built-in ``register_models`` hook: all 13 front-end model names (cv2 and lama runnable)."""

from __future__ import annotations

from ..plugins.hookspecs import hookimpl
from .lama import LaMa
from .opencv import OpenCV2
from .registry import ModelRegistry
from .unsupported import UNSUPPORTED_MODELS


@hookimpl(trylast=True)
def register_models(registry: ModelRegistry) -> None:
    registry.register(LaMa)
    registry.register(OpenCV2)
    for cls in UNSUPPORTED_MODELS:
        registry.register(cls)
