"""The pluggy plugin manager: built-in defaults, ``--plugins`` and entry-point discovery.

Order matters for ``firstresult`` hooks: pluggy calls the most recently registered plugin first,
so the built-in defaults are registered before anything else and any enabled plugin can override
them (the ``distributed`` executor replaces the local one this way).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from types import ModuleType

import pluggy

from ..config import ConfigError
from . import hookspecs

BUILTIN_DEFAULTS = (
    "lama_cleaner.models.builtin",
    "lama_cleaner.image_plugins.builtin",
    "lama_cleaner.local_executor",
)
"""Always registered: the classic behaviour, expressed as plugins."""

OPTIONAL_BUILTINS = {
    "distributed": "lama_cleaner.plugins.distributed.plugin",
}
"""Built-in plugins enabled by name with ``--plugins``."""

ENTRY_POINT_GROUP = "lama_cleaner"
AUTOLOAD_ENV = "LAMA_CLEANER_DISABLE_PLUGIN_AUTOLOAD"

_current: pluggy.PluginManager | None = None


def _import(path: str) -> ModuleType:
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise ConfigError(f"cannot load plugin {path!r}: {exc}") from exc


def create_plugin_manager(enabled: Iterable[str] = (), *, autoload: bool | None = None) -> pluggy.PluginManager:
    """Build a manager with the defaults, third-party entry points and the ``enabled`` plugins.

    ``enabled`` items are built-in names (``distributed``), entry-point names of the
    ``lama_cleaner`` group, or importable module paths (``mypkg.myplugin``).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for path in BUILTIN_DEFAULTS:
        pm.register(_import(path), name=f"builtin:{path.removeprefix('lama_cleaner.')}")
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for raw in enabled:
        name = raw.strip()
        if not name or pm.has_plugin(name):
            continue  # empty, or an entry point already loaded under that name
        if name in OPTIONAL_BUILTINS:
            pm.register(_import(OPTIONAL_BUILTINS[name]), name=name)
        elif "." in name or ":" in name:
            pm.register(_import(name.replace(":", ".")), name=name)
        else:
            known = ", ".join(sorted(OPTIONAL_BUILTINS))
            raise ConfigError(
                f"unknown plugin {name!r}: not a built-in ({known}), not an installed "
                f"'{ENTRY_POINT_GROUP}' entry point and not a module path"
            )
    pm.check_pending()
    global _current
    _current = pm
    return pm


def split_plugins(values: Sequence[str] | None) -> list[str]:
    """``--plugins a,b --plugins c`` -> ``["a", "b", "c"]`` (the flag is repeatable and comma-separated)."""
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def current_plugin_manager() -> pluggy.PluginManager:
    """The manager most recently built by ``create_plugin_manager`` (a default one if none was built).

    Lets hook implementations that only receive ``config`` (the built-in executor) reach the registries.
    """
    return _current if _current is not None else create_plugin_manager()


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """Names of every registered plugin (for start-up logs and diagnostics)."""
    return [name for name, _ in pm.list_name_plugin()]
