"""From the ``register_scaling_providers`` hook to the providers a configuration needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ....config import ConfigError
from ..config import AutoscaleConfig
from .base import ProviderContext, ScalingProvider


def provider_classes(results: Iterable[Iterable[type[ScalingProvider]] | None]) -> dict[str, type[ScalingProvider]]:
    """Flatten the hook's results into ``{name: class}``; two providers with one name is an error."""
    classes: dict[str, type[ScalingProvider]] = {}
    for result in results:
        for cls in result or ():
            if not (isinstance(cls, type) and issubclass(cls, ScalingProvider)):
                raise ConfigError(f"register_scaling_providers returned {cls!r}, not a ScalingProvider subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"scaling provider {cls.__qualname__} has no name")
            other = classes.get(name)
            if other is not None and other is not cls:
                raise ConfigError(
                    f"two scaling providers are named {name!r}: {other.__module__}.{other.__qualname__} "
                    f"and {cls.__module__}.{cls.__qualname__}"
                )
            classes[name] = cls
    return classes


def collect_provider_classes(pluginmanager: Any, config: Any = None) -> dict[str, type[ScalingProvider]]:
    """Every provider the enabled plugins register (the autoscale plugin's own included)."""
    return provider_classes(pluginmanager.hook.register_scaling_providers(config=config))


def build_providers(
    config: AutoscaleConfig, classes: Mapping[str, type[ScalingProvider]], context: ProviderContext
) -> dict[str, ScalingProvider]:
    """Build each provider some queue names, from its ``[autoscale.providers.<name>]`` table."""
    needed: list[str] = []
    for policy in config.queues.values():
        needed += [name for name in policy.providers if name not in needed]
    built: dict[str, ScalingProvider] = {}
    for name in needed:
        if name not in classes:
            raise ConfigError(f"no scaling provider named {name!r} (registered: {', '.join(sorted(classes))})")
        built[name] = classes[name].from_config(config.providers.get(name, {}), context)
    return built
