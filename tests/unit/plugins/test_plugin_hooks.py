"""Plugin-declared hooks (``add_hookspecs``, historic like pytest's ``pytest_addhooks``) and
plugin-registered commands (``register_commands``), on real plugin managers."""

from __future__ import annotations

import re

import pluggy
import pytest

from lama_cleaner.cli import Command, discover_commands
from lama_cleaner.config import ConfigError
from lama_cleaner.plugins import hookspecs
from lama_cleaner.plugins.distributed import hookspecs as distributed_hookspecs
from lama_cleaner.plugins.hookspecs import hookimpl
from lama_cleaner.plugins.manager import build_plugin_manager, catalog_plugin_manager

WATCHER = "tests.support.node_watcher"
DISTRIBUTED_HOOKS = ("scheduler_started", "scheduler_stopped", "node_event", "task_unschedulable", "node_labels")


def test_the_distributed_plugin_publishes_its_hooks():
    pm = build_plugin_manager(["distributed"], autoload=False)
    for name in DISTRIBUTED_HOOKS:
        caller = getattr(pm.hook, name)
        assert caller.spec is not None and caller.spec.namespace is distributed_hookspecs, name
    assert getattr(build_plugin_manager([], autoload=False).hook, "node_event", None) is None, "only once registered"


def test_a_plugin_may_implement_hooks_another_plugin_publishes():
    """Registered before the publisher (the order ``--plugins`` gives), still verified and called."""
    pm = build_plugin_manager([WATCHER, "distributed"], autoload=False)
    pm.hook.task_unschedulable(task_id="t1", queue="gpu", kind="inpaint", name="lama", reason="no node")
    from tests.support import node_watcher

    assert node_watcher.seen[-1] == ("t1", "no node")


def test_implementing_an_unpublished_hook_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=re.escape(f"plugin '{WATCHER}' implements a hook no loaded plugin declares")):
        build_plugin_manager([WATCHER], autoload=False)


class _Publisher:
    """A third-party plugin offering its own hook (as autoscale will offer a scaling provider)."""

    class Specs:
        @hookspecs.hookspec(firstresult=True)
        def pick_colour(self, name: str) -> str | None:
            """Return a colour for ``name``."""

    @hookimpl
    def add_hookspecs(self, pluginmanager: pluggy.PluginManager) -> None:
        pluginmanager.add_hookspecs(self.Specs)


class _Implementer:
    @hookimpl
    def pick_colour(self, name: str) -> str:
        return f"blue for {name}"


def test_add_hookspecs_is_historic():
    """Called for every plugin as it is registered, also after the manager was built."""
    pm = build_plugin_manager([], autoload=False)
    pm.register(_Implementer())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()
    pm.register(_Publisher())
    pm.check_pending()
    assert pm.hook.pick_colour(name="sky") == "blue for sky"


def test_commands_come_from_the_core_and_every_builtin_plugin_enabled_or_not():
    commands = discover_commands()
    assert {"serve", "batch", "install-frontend", "node", "scheduler"} <= set(commands)
    assert all(isinstance(c, Command) and c.help for c in commands.values())


def test_two_plugins_registering_one_command_is_refused():
    class Clash:
        @hookimpl
        def register_commands(self):
            return [Command("node", "another node", lambda argv: 0)]

    pm = catalog_plugin_manager(autoload=False)
    pm.register(Clash(), name="clash")
    with pytest.raises(ConfigError, match=re.escape("command 'node' is registered by 'distributed' and by 'clash'")):
        discover_commands(pm)
