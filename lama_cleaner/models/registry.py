"""Name -> model class, filled by the ``register_models`` hook of every plugin."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..config import MODEL_NAMES
from ..errors import NotFound
from .base import InpaintModel

if TYPE_CHECKING:
    import pluggy

log = logging.getLogger(__name__)


class ModelRegistry:
    """The models a server or node knows. The first class registered under a name wins.

    Built-ins register with ``trylast=True``, so a plugin can override a built-in name by registering
    the same name first.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[InpaintModel]] = {}

    def register(self, model_cls: type[InpaintModel]) -> None:
        name = getattr(model_cls, "name", "")
        if not name:
            raise ValueError(f"{model_cls!r} has no model name")
        if model_cls.resource_class not in ("gpu", "cpu"):
            raise ValueError(f"{name}: resource_class must be 'gpu' or 'cpu', not {model_cls.resource_class!r}")
        if name in self._classes:
            log.debug("model %s already registered by %r; ignoring %r", name, self._classes[name], model_cls)
            return
        self._classes[name] = model_cls

    def get(self, name: str) -> type[InpaintModel]:
        try:
            return self._classes[name]
        except KeyError:
            raise NotFound(f"{name} not implemented") from None

    def names(self) -> list[str]:
        """The front end's 13 names first (in its order), then plugin models in registration order."""
        known = [n for n in MODEL_NAMES if n in self._classes]
        return known + [n for n in self._classes if n not in MODEL_NAMES]

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __len__(self) -> int:
        return len(self._classes)


def build_model_registry(pm: pluggy.PluginManager) -> ModelRegistry:
    registry = ModelRegistry()
    pm.hook.register_models(registry=registry)
    return registry
