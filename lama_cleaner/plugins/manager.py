"""The pluggy plugin manager: built-in defaults, built-in plugins, ``--plugins`` and entry points.

Order matters for ``firstresult`` hooks: pluggy calls the most recently registered plugin first,
so the built-in defaults are registered before anything else and any enabled plugin can override
them (a plugin's executor replaces the local one this way).

Built-in plugins are found, not listed: every sub-package of ``lama_cleaner.plugins`` that holds a
``plugin`` module is one, enabled by its package name. Their configuration sections and commands
are known whether or not they are enabled (one config file serves every process of a deployment,
and ``lama-cleaner <command>`` must not need ``--plugins``), so this module also builds the
*catalog*: a manager with every built-in plugin registered, never used to serve.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Iterable, Sequence
from types import ModuleType

import pluggy

from ..config import CORE_SECTIONS, ConfigError, ConfigSection
from . import hookspecs
from .builtin import builtin_plugins, builtin_section_declarations

BUILTIN_DEFAULTS = (
    "lama_cleaner.models.builtin",
    "lama_cleaner.image_plugins.builtin",
    "lama_cleaner.local_executor",
    "lama_cleaner.builtin_commands",
)
"""Always registered: the classic behaviour and the core commands, expressed as plugins."""

ENTRY_POINT_GROUP = "lama_cleaner"
AUTOLOAD_ENV = "LAMA_CLEANER_DISABLE_PLUGIN_AUTOLOAD"

_current: pluggy.PluginManager | None = None


def _import(path: str) -> ModuleType:
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise ConfigError(f"cannot load plugin {path!r}: {exc}") from exc


def build_plugin_manager(enabled: Iterable[str] = (), *, autoload: bool | None = None) -> pluggy.PluginManager:
    """A manager with the defaults, third-party entry points and the ``enabled`` plugins.

    ``enabled`` items are built-in plugin names, entry-point names of the ``lama_cleaner`` group, or
    importable module paths (``mypkg.myplugin``). Each plugin's ``add_hookspecs`` runs as it is
    registered (a historic call), so a plugin may implement hooks that another plugin publishes.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.hook.add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    for path in BUILTIN_DEFAULTS:
        pm.register(_import(path), name=f"builtin:{path.removeprefix('lama_cleaner.')}")
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    builtins = builtin_plugins()
    for raw in enabled:
        name = raw.strip()
        if not name or pm.has_plugin(name):
            continue  # empty, or an entry point already loaded under that name
        if name in builtins:
            pm.register(_import(builtins[name]), name=name)
        elif "." in name or ":" in name:
            pm.register(_import(name.replace(":", ".")), name=name)
        else:
            known = ", ".join(builtins)
            raise ConfigError(
                f"unknown plugin {name!r}: not a built-in ({known}), not an installed "
                f"'{ENTRY_POINT_GROUP}' entry point and not a module path"
            )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(_unknown_hooks_message(pm, exc.plugin)) from None
    return pm


def _unknown_hooks_message(pm: pluggy.PluginManager, plugin: object) -> str:
    """One line for ``check_pending``'s refusal: which plugin, which hooks (pluggy's own message
    prints the module's file path)."""
    unknown = sorted(
        name
        for name, caller in vars(pm.hook).items()
        if isinstance(caller, pluggy.HookCaller)
        and not caller.has_spec()
        and any(impl.plugin is plugin for impl in caller.get_hookimpls())
    )
    return (
        f"plugin {pm.get_name(plugin)!r} implements a hook no loaded plugin declares ({', '.join(unknown)}); "
        "enable the plugin that publishes it, or mark the implementation hookimpl(optionalhook=True)"
    )


def create_plugin_manager(enabled: Iterable[str] = (), *, autoload: bool | None = None) -> pluggy.PluginManager:
    """:func:`build_plugin_manager`, remembered as this process's manager (:func:`current_plugin_manager`)."""
    global _current
    pm = build_plugin_manager(enabled, autoload=autoload)
    _current = pm
    return pm


def catalog_plugin_manager(*, autoload: bool | None = None) -> pluggy.PluginManager:
    """Every built-in plugin (enabled or not) and the installed entry points: where commands and
    documentation are collected. Never used to serve."""
    return build_plugin_manager(builtin_plugins(), autoload=autoload)


@functools.cache
def builtin_sections() -> dict[str, ConfigSection]:
    """The core's config sections and those of every built-in plugin, enabled or not (entry points
    not consulted)."""
    found: dict[str, ConfigSection] = {section.name: section for section in CORE_SECTIONS}
    owners: dict[str, str] = dict.fromkeys(found, "the core")
    for plugin, section in builtin_section_declarations():
        if not isinstance(section, ConfigSection):
            raise ConfigError(f"plugin {plugin!r}: config_sections must return ConfigSection objects")
        if section.name in found and found[section.name].schema is not section.schema:
            raise ConfigError(
                f"config section [{section.name}] is declared by {owners[section.name]} and by {plugin!r}"
            )
        found[section.name] = section
        owners.setdefault(section.name, repr(plugin))
    return found


def declared_sections(pm: pluggy.PluginManager) -> dict[str, ConfigSection]:
    """Every built-in plugin's sections plus those the plugins registered in ``pm`` declare."""
    return _sections(pm, dict(builtin_sections()))


def _sections(pm: pluggy.PluginManager, found: dict[str, ConfigSection]) -> dict[str, ConfigSection]:
    owners = {name: "a built-in plugin" for name in found}
    for impl in pm.hook.config_sections.get_hookimpls():
        for section in impl.function() or ():
            if not isinstance(section, ConfigSection):
                raise ConfigError(f"plugin {impl.plugin_name!r}: config_sections must return ConfigSection objects")
            other = found.get(section.name)
            if other is not None and other.schema is not section.schema:
                raise ConfigError(
                    f"config section [{section.name}] is declared by {owners[section.name]} "
                    f"and by plugin {impl.plugin_name!r}"
                )
            found[section.name] = section
            owners.setdefault(section.name, f"plugin {impl.plugin_name!r}")
    return found


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
