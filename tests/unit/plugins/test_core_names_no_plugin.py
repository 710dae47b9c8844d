"""The core names no plugin: ``config.py``, ``cli.py`` and ``plugins/manager.py`` may mention a
plugin only as an example in a docstring or a comment, never in code (no identifier, no string the
program uses). Built-in plugins are found, and their sections and commands collected, through hooks."""

from __future__ import annotations

import ast

import pytest

from lama_cleaner.plugins.manager import builtin_plugins
from tests.support.server_process import REPO_ROOT

CORE_FILES = ("lama_cleaner/config.py", "lama_cleaner/cli.py", "lama_cleaner/plugins/manager.py")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of the module, a class, a function, or an
    attribute: a bare string expression)."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    out.add(id(stmt.value))
    return out


def _code_words(path: str) -> list[str]:
    tree = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.alias):
            words.append(node.name)
    return words


@pytest.mark.parametrize("path", CORE_FILES)
def test_core_code_names_no_builtin_plugin(path):
    names = set(builtin_plugins())
    assert "distributed" in names, "the check must know the plugins it looks for"
    offending = [word for word in _code_words(path) if any(name in word.lower() for name in names)]
    assert offending == [], f"{path} names a plugin in code: {offending}"
