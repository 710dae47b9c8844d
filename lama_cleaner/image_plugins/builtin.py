"""Built-in ``register_image_plugins`` hook: each enabled plugin that can run here.

An enabled plugin whose package or weights are missing is logged once and left out (upstream exits
the whole process instead), so ``/server_config`` only lists plugins that work.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..plugins.hookspecs import hookimpl
from .base import ImagePlugin
from .make_gif import MakeGIF
from .optional import GFPGAN, AnimeSeg, InteractiveSeg, RealESRGAN, RemoveBG, RestoreFormer
from .registry import ImagePluginRegistry

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

PLUGIN_CLASSES: dict[str, type[ImagePlugin]] = {
    cls.name: cls for cls in (InteractiveSeg, RemoveBG, AnimeSeg, RealESRGAN, GFPGAN, RestoreFormer, MakeGIF)
}
ENABLE_FLAGS = {
    "InteractiveSeg": "enable_interactive_seg",
    "RemoveBG": "enable_remove_bg",
    "AnimeSeg": "enable_anime_seg",
    "RealESRGAN": "enable_realesrgan",
    "GFPGAN": "enable_gfpgan",
    "RestoreFormer": "enable_restoreformer",
    "MakeGIF": "enable_gif",
}
_warned: set[tuple[str, str]] = set()


def enabled_plugin_classes(config: Config) -> list[type[ImagePlugin]]:
    """Enabled and runnable here, in upstream's order; logs why an enabled one is left out."""
    result = []
    for name, cls in PLUGIN_CLASSES.items():
        if not getattr(config, ENABLE_FLAGS[name], False):
            continue
        ok, reason = cls.availability(config)
        if not ok:
            if (name, reason) not in _warned:
                _warned.add((name, reason))
                log.warning("Image plugin %s is enabled but cannot run here (%s); it is not offered", name, reason)
            continue
        result.append(cls)
    return result


@hookimpl(trylast=True)
def register_image_plugins(registry: ImagePluginRegistry, config: Config) -> None:
    for cls in enabled_plugin_classes(config):
        registry.register(cls(config))
