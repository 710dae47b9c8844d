"""Which plugins are built in, and the config sections they declare, found without a plugin manager.

A built-in plugin is a sub-package of ``lama_cleaner.plugins`` holding a ``plugin`` module (the
folder tree is the list; nothing names them). Their sections are known in every process whether or
not the plugin is enabled, so ``Config()`` needs them; reading them here, by calling each plugin
module's ``config_sections`` hook implementation directly, keeps the core config free of the plugin
manager (which itself imports the config). Plain functions, imported lazily by the config.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from typing import Any

PLUGINS_PACKAGE = "lama_cleaner.plugins"


@functools.cache
def builtin_plugins() -> dict[str, str]:
    """``{name: module}`` of every built-in plugin: the sub-packages of ``lama_cleaner.plugins``
    that hold a ``plugin`` module, by package name."""
    package = importlib.import_module(PLUGINS_PACKAGE)
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = f"{PLUGINS_PACKAGE}.{info.name}.plugin"
        if info.ispkg and importlib.util.find_spec(module) is not None:
            found[info.name] = module
    return dict(sorted(found.items()))


@functools.cache
def builtin_section_declarations() -> tuple[tuple[str, Any], ...]:
    """``(plugin name, ConfigSection)`` for every section a built-in plugin declares, in plugin order.

    Declarations are immutable and the plugins are part of the package, so this is computed once.
    """
    found = []
    for name, module_path in builtin_plugins().items():
        hook = getattr(importlib.import_module(module_path), "config_sections", None)
        for section in (hook() if hook is not None else None) or ():
            found.append((name, section))
    return tuple(found)
