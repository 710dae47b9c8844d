"""Name -> image-plugin instance, filled by the ``register_image_plugins`` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import NotFound
from .base import ImagePlugin

if TYPE_CHECKING:
    import pluggy

    from ..config import Config

PLUGIN_ORDER = ("InteractiveSeg", "RemoveBG", "AnimeSeg", "RealESRGAN", "GFPGAN", "RestoreFormer", "MakeGIF")
"""The order ``/server_config.plugins`` lists them in upstream."""


class ImagePluginRegistry:
    def __init__(self) -> None:
        self._plugins: dict[str, ImagePlugin] = {}

    def register(self, plugin: ImagePlugin) -> None:
        """Add an enabled plugin; the first one registered under a name wins (built-ins register last)."""
        if not plugin.name:
            raise ValueError(f"{plugin!r} has no plugin name")
        self._plugins.setdefault(plugin.name, plugin)

    def get(self, name: str) -> ImagePlugin:
        try:
            return self._plugins[name]
        except KeyError:
            raise NotFound("Plugin not found") from None

    def names(self) -> list[str]:
        known = [n for n in PLUGIN_ORDER if n in self._plugins]
        return known + [n for n in self._plugins if n not in PLUGIN_ORDER]

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def __len__(self) -> int:
        return len(self._plugins)


def build_image_plugin_registry(pm: pluggy.PluginManager, config: Config) -> ImagePluginRegistry:
    registry = ImagePluginRegistry()
    pm.hook.register_image_plugins(registry=registry, config=config)
    return registry
