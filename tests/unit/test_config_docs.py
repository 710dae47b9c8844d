"""docs/configuration.md is generated from the core's and the built-in plugins' settings and must be
committed up to date."""

from __future__ import annotations

import re
import runpy
import tomllib

import pytest

from lama_cleaner.config import Config, ConfigError
from lama_cleaner.plugins.config_loader import load_config
from lama_cleaner.plugins.manager import build_plugin_manager, builtin_sections
from tests.support.server_process import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gen_config_docs.py"


def test_configuration_doc_is_up_to_date():
    render = runpy.run_path(str(SCRIPT))["render"]
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/configuration.md is stale: run `python scripts/gen_config_docs.py`"


EXAMPLE_PLUGIN = "tests.support.example_plugin.lama_cleaner_example_plugin"


def test_every_config_field_is_documented():
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Config.__dataclass_fields__:
        if name != "sections":
            assert f"| `{name}` |" in committed, name


def test_every_builtin_plugin_section_is_documented():
    """Found through the plugins' ``config_sections`` hook, not listed here: a new built-in
    plugin's table fails this test until the page is regenerated."""
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert builtin_sections(), "the distributed plugin declares [distributed]"
    for name, section in builtin_sections().items():
        assert f"## `[{name}]`" in committed, name
        for field in section.schema.__dataclass_fields__:
            assert f"| `{name}.{field}` |" in committed, f"{name}.{field}"


def test_the_documented_example_file_loads(tmp_path):
    """With the real example plugin loaded, as ``--plugins`` would load it; without it, its table is
    refused in one line naming it."""
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", committed, re.S).group(1)
    path = tmp_path / "settings.toml"
    path.write_text(example, encoding="utf-8")
    tomllib.loads(example)  # valid TOML
    config = load_config(path, plugin_manager=build_plugin_manager([EXAMPLE_PLUGIN], autoload=False))
    assert config.model == "cv2" and config.distributed.local_nodes == 2
    assert config.distributed.retry["inpaint"].max_attempts == 2
    assert config.example.greeting == "hello" and config.sections["example"] is config.example
    refused = "unknown config section [example] (no enabled plugin declares it)"
    with pytest.raises(ConfigError, match=re.escape(refused)):
        load_config(path, plugin_manager=build_plugin_manager([], autoload=False))
