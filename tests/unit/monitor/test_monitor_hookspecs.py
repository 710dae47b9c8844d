"""The monitor publishes an ``alert_sinks`` hook; a plugin adds a sink through it."""

from __future__ import annotations

import pluggy

from lama_cleaner.config import Config
from lama_cleaner.plugins import hookspecs as core_hookspecs
from lama_cleaner.plugins.hookspecs import PROJECT, hookimpl
from lama_cleaner.plugins.monitor import hookspecs as monitor_hookspecs
from lama_cleaner.plugins.monitor.alerts.sinks import Delivery


class PagerSink:
    name = "pager"
    every_evaluation = False

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def deliver(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)

    def close(self) -> None:
        return None


class PagerPlugin:
    @hookimpl
    def alert_sinks(self):  # takes none of the arguments: pluggy passes only those an impl names
        return [PagerSink()]


def test_a_plugin_contributes_sinks() -> None:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(core_hookspecs)
    pm.add_hookspecs(monitor_hookspecs)  # what the monitor's add_hookspecs implementation does
    pm.register(PagerPlugin())
    results = pm.hook.alert_sinks(config=Config())
    sinks = [sink for contributed in results for sink in contributed]
    assert [s.name for s in sinks] == ["pager"]


def test_the_monitor_hook_names_do_not_clash_with_the_core() -> None:
    core = {n for n in dir(core_hookspecs) if callable(getattr(core_hookspecs, n)) and not n.startswith("_")}
    assert "alert_sinks" not in core
