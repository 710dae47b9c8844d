"""Plugin-owned configuration: sections declared through ``config_sections``, read from real files by
the real loader, and refused in one line naming the key."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from lama_cleaner.config import Config, ConfigError, ConfigSection, setting
from lama_cleaner.plugins.config_loader import load_config, new_config
from lama_cleaner.plugins.distributed.config import DistributedConfig
from lama_cleaner.plugins.hookspecs import hookimpl
from lama_cleaner.plugins.manager import build_plugin_manager, declared_sections

EXAMPLE_PLUGIN = "tests.support.example_plugin.lama_cleaner_example_plugin"


def _file(tmp_path, text: str):
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _example_pm():
    return build_plugin_manager([EXAMPLE_PLUGIN], autoload=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[distributed]\nmax_queud = 3\n", "unknown setting distributed.max_queud"),
        ("[foo]\nbar = 1\n", "unknown config section [foo] (no enabled plugin declares it)"),
        ("prot = 8080\n", "unknown setting prot"),
        ("sections = 1\n", "unknown setting sections"),
        ("[distributed.retry.inpaint]\nmax_attemps = 2\n", "unknown setting distributed.retry.inpaint.max_attemps"),
    ],
)
def test_unknown_keys_and_tables_are_refused_naming_them(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_file(tmp_path, text))


def test_a_builtin_plugins_section_is_known_without_enabling_it(tmp_path):
    """One file for every process: ``lama-cleaner node`` reads ``[distributed]`` without ``--plugins``."""
    config = load_config(_file(tmp_path, "[distributed]\nmax_queued = 7\n"))
    assert config.plugins == [] and config.distributed.max_queued == 7
    assert isinstance(Config().distributed, DistributedConfig), "a bare Config has every built-in section"


def test_a_third_party_section_is_read_and_type_checked(tmp_path):
    config = load_config(_file(tmp_path, '[example]\ngreeting = "hi"\n'), plugin_manager=_example_pm())
    assert config.example.greeting == "hi"
    with pytest.raises(ConfigError, match=re.escape("example.greeting must be a string, got 5 (int)")):
        load_config(_file(tmp_path, "[example]\ngreeting = 5\n"), plugin_manager=_example_pm())


def test_the_plugins_a_file_enables_bring_their_sections(tmp_path):
    """Without a manager, ``load_config`` loads the plugins the file names, as the node and the
    scheduler do with a shared file."""
    text = f'plugins = ["{EXAMPLE_PLUGIN}"]\n[example]\ngreeting = "from the file"\n'
    assert load_config(_file(tmp_path, text)).example.greeting == "from the file"


def test_a_section_reads_the_same_through_both_spellings():
    config = new_config(_example_pm())
    assert config.example is config.sections["example"]
    replacement = DistributedConfig(max_queued=3)
    config.distributed = replacement
    assert config.sections["distributed"] is replacement, "assignment replaces the section, never shadows it"
    with pytest.raises(AttributeError, match="no setting or config section 'nope'"):
        _ = config.nope


def test_to_dict_is_the_file_format_and_loads_back(tmp_path):
    """Local nodes get the server's configuration as such a file."""
    config = new_config(_example_pm())
    config.distributed.max_queued = 9
    config.distributed.retry["plugin"].max_attempts = 1
    config.example.greeting = "round trip"
    config.plugins = [EXAMPLE_PLUGIN]
    data = config.to_dict()
    assert "sections" not in data and data["distributed"]["max_queued"] == 9
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_config(path) == config


def test_generic_checks_use_the_settings_metadata():
    """Ranges and choices come from ``setting(...)`` metadata; strings match choices case-insensitively."""
    with pytest.raises(ConfigError, match=re.escape("distributed.heartbeat_liveness must be >= 1, got 0")):
        load_config(None, distributed={"heartbeat_liveness": 0})
    assert load_config(None, distributed={"journal_synchronous": "full"}).distributed.journal_synchronous == "FULL"


@dataclass
class _Pair:
    low: int = setting(1, "Lower bound.", minimum=0)
    high: int = setting(2, "Upper bound.")


def _check_pair(pair: _Pair) -> None:
    if pair.low > pair.high:
        raise ConfigError("pair.low must not exceed pair.high")


class _PairPlugin:
    @hookimpl
    def config_sections(self):
        return [ConfigSection("pair", _Pair, validate=_check_pair, doc="A test section.")]


@dataclass
class _OtherPair:
    value: int = setting(0, "Anything.")


class _ClashPlugin:
    @hookimpl
    def config_sections(self):
        # Its own schema: declaring a section for a real plugin's schema (DistributedConfig) would replace that
        # schema's declaration, and its validator, for every test that runs after this one.
        return [ConfigSection("pair", _OtherPair)]


def _pm_with(*plugins):
    pm = build_plugin_manager([], autoload=False)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_a_sections_own_validate_runs_after_the_generic_checks():
    pm = _pm_with(_PairPlugin())
    assert load_config(None, plugin_manager=pm, pair={"low": 0, "high": 5}).pair.high == 5
    with pytest.raises(ConfigError, match=re.escape("pair.low must be >= 0, got -1")):
        load_config(None, plugin_manager=pm, pair={"low": -1})
    with pytest.raises(ConfigError, match=re.escape("pair.low must not exceed pair.high")):
        load_config(None, plugin_manager=pm, pair={"low": 3})


def test_two_plugins_cannot_declare_one_section():
    with pytest.raises(ConfigError, match=re.escape("config section [pair] is declared by plugin")):
        declared_sections(_pm_with(_PairPlugin(), _ClashPlugin()))


def test_a_section_may_not_shadow_a_core_setting():
    class Shadow:
        @hookimpl
        def config_sections(self):
            return [ConfigSection("port", _Pair)]

    with pytest.raises(ConfigError, match=re.escape("config section [port] clashes with the core setting port")):
        new_config(_pm_with(Shadow()))
