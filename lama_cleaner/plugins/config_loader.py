"""Loading a :class:`~lama_cleaner.config.Config` together with the sections plugins declare.

Here rather than in ``lama_cleaner.config``: finding the sections takes the plugin manager, and the
manager (and every plugin's section) imports the config module, so the core config stays below
both and this module sits above them.
"""

from __future__ import annotations

import os
from typing import Any

import pluggy

from ..config import Config, apply_mapping, check_type, read_config_file, section_defaults, validate_config
from .manager import build_plugin_manager, declared_sections


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
    **overrides: Any,
) -> Config:
    """Build a validated Config from defaults, an optional file, then keyword overrides.

    The sections known are those of every built-in plugin and those the plugins of
    ``plugin_manager`` declare. Without a manager, one is built from the ``plugins`` the file or the
    overrides name (plus installed entry points), so ``load_config("lc.toml")`` accepts the tables of
    the plugins that file enables.
    """
    data = read_config_file(path) if path else {}
    if plugin_manager is None:
        enabled = check_type(overrides.get("plugins", data.get("plugins")) or [], list[str], "plugins")
        plugin_manager = build_plugin_manager(enabled)
    cfg = new_config(plugin_manager)
    apply_mapping(cfg, data)
    if overrides:
        apply_mapping(cfg, overrides)
    validate_config(cfg)
    return cfg


def new_config(plugin_manager: pluggy.PluginManager | None = None) -> Config:
    """A Config of defaults whose ``sections`` hold every built-in plugin's section and every
    section the plugins of ``plugin_manager`` declare."""
    if plugin_manager is None:
        return Config()
    return Config(sections=section_defaults(declared_sections(plugin_manager).values()))
