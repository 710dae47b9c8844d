"""``advertised_labels``: ``--labels`` with every plugin's ``node_labels`` merged over them."""

from __future__ import annotations

import pluggy
import pytest

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.distributed import hookspecs
from lama_cleaner.plugins.distributed.node.labels import advertised_labels
from lama_cleaner.plugins.hookspecs import PROJECT, hookimpl


def manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


class Zone:
    def __init__(self, zone: str) -> None:
        self.zone = zone

    @hookimpl
    def node_labels(self, config):
        return {"zone": self.zone, "from": config["name"]}


class Nothing:
    @hookimpl
    def node_labels(self):
        return None


class Wrong:
    @hookimpl
    def node_labels(self):
        return {"gpus": 2}


def test_plugin_labels_are_merged_over_the_flag_later_plugins_winning():
    pm = manager(Zone("eu"), Nothing(), Zone("us"))
    labels = advertised_labels(pm, {"name": "cfg"}, {"zone": "lab", "tier": "spot"})
    assert labels == {"zone": "us", "tier": "spot", "from": "cfg"}


def test_without_implementations_or_without_the_hook_the_flag_stands():
    assert advertised_labels(manager(), {}, {"zone": "lab"}) == {"zone": "lab"}
    bare = pluggy.PluginManager(PROJECT)  # the distributed plugin (which declares the hook) not registered
    assert advertised_labels(bare, {}, {"zone": "lab"}) == {"zone": "lab"}


def test_a_plugin_returning_something_else_than_str_to_str_is_named():
    pm = manager(Wrong())
    with pytest.raises(ConfigError, match=r"node_labels must return a dict of str to str, got \{'gpus': 2\}"):
        advertised_labels(pm, {}, {})
