"""Every hook is documented in docs/plugins.md with its arguments (datasette's test_docs pattern).

The hooks are discovered, not listed: the core's hookspecs and whatever every built-in plugin
publishes through ``add_hookspecs`` (read from a manager with every built-in plugin registered). A
new hook, or a new argument, fails here until docs/plugins.md has a heading ``### `name(args)` ``
naming exactly its arguments."""

from __future__ import annotations

import re

import pytest

from lama_cleaner.plugins import hookspecs
from lama_cleaner.plugins.manager import catalog_plugin_manager
from tests.support.server_process import REPO_ROOT

DOC = REPO_ROOT / "docs" / "plugins.md"
HEADING = re.compile(r"^### `(\w+)\(([^)]*)\)`", re.M)


def _hookspecs() -> list[tuple[str, tuple[str, ...], str, str]]:
    """``(name, argnames, module, docstring)`` of every hook of the core and of the built-in plugins."""
    pm = catalog_plugin_manager(autoload=False)
    found = []
    for name, caller in sorted(vars(pm.hook).items()):
        spec = getattr(caller, "spec", None)
        if spec is None:
            continue
        found.append((name, tuple(spec.argnames), spec.namespace.__name__, spec.function.__doc__ or ""))
    return found


HOOKS = _hookspecs()


def _documented() -> dict[str, tuple[str, ...]]:
    text = DOC.read_text(encoding="utf-8")
    return {name: tuple(a.strip() for a in args.split(",") if a.strip()) for name, args in HEADING.findall(text)}


def test_hooks_of_the_core_and_of_built_in_plugins_are_found():
    modules = {module for _, _, module, _ in HOOKS}
    assert hookspecs.__name__ in modules
    assert "lama_cleaner.plugins.distributed.hookspecs" in modules, "a built-in plugin's published hooks"


@pytest.mark.parametrize(("name", "argnames", "module", "doc"), HOOKS, ids=[h[0] for h in HOOKS])
def test_every_hook_is_documented_with_its_arguments(name, argnames, module, doc):
    documented = _documented()
    assert name in documented, f"docs/plugins.md lacks a '### `{name}(...)`' section for {module}.{name}"
    assert documented[name] == argnames, f"docs/plugins.md shows {name}{documented[name]}; the hook takes {argnames}"
    assert doc.strip(), f"{module}.{name} needs a docstring saying what a plugin may do there"


def test_the_doc_documents_no_hook_that_does_not_exist():
    names = {name for name, *_ in HOOKS}
    assert set(_documented()) <= names, set(_documented()) - names
