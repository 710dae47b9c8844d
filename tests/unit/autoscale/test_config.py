"""config.py: the [autoscale] section is read from a real TOML file and refused with the key's name."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields

import pytest

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.autoscale.config import (
    AutoscaleConfig,
    QueuePolicy,
    autoscale_config_from_mapping,
    settings_from_mapping,
    validate_autoscale_config,
)

EXAMPLE = """
[autoscale]
interval_s = 2
register_timeout-s = 60

[autoscale.queues.gpu]
min_nodes = 0
max_nodes = 6
providers = ["kubernetes", "local"]
queued_per_node = 2

[autoscale.providers.kubernetes]
namespace = "lama"
"""


def load(text: str) -> AutoscaleConfig:
    return autoscale_config_from_mapping(tomllib.loads(text)["autoscale"])


def test_a_config_file_section_loads_with_defaults_for_the_rest():
    config = load(EXAMPLE)
    validate_autoscale_config(config, provider_names={"kubernetes", "local"}, queues=["gpu", "cpu"])
    assert config.interval_s == 2.0 and isinstance(config.interval_s, float)
    assert config.register_timeout_s == 60.0
    gpu = config.queues["gpu"]
    assert (gpu.max_nodes, gpu.providers, gpu.queued_per_node) == (6, ["kubernetes", "local"], 2.0)
    assert gpu.down_window_s == QueuePolicy().down_window_s
    assert config.providers == {"kubernetes": {"namespace": "lama"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[autoscale]\ninterval = 3", "unknown setting autoscale.interval (known: "),
        ("[autoscale]\ninterval_s = '3'", "autoscale.interval_s must be a number, got '3'"),
        ("[autoscale.queues.gpu]\nmax_nodes = 2.5", "autoscale.queues.gpu.max_nodes must be an integer, got 2.5"),
        ("[autoscale.queues.gpu]\nprovider = ['local']", "unknown setting autoscale.queues.gpu.provider"),
        ("[autoscale.queues.gpu]\nproviders = 'local'", "autoscale.queues.gpu.providers must be a list of strings"),
        ("[autoscale]\nqueues = 3", "autoscale.queues must be a table of tables, got 3"),
    ],
)
def test_wrong_keys_and_types_name_the_key(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[autoscale]\ninterval_s = 0", "autoscale.interval_s must be > 0, got 0.0"),
        ("[autoscale]\nhistory = 0", "autoscale.history must be >= 1, got 0"),
        ("[autoscale]\nretry_min_s = 900", "autoscale.retry_min_s (900) must not exceed autoscale.retry_max_s (600)"),
        ("[autoscale.queues.gpu]\nmin_nodes = -1", "autoscale.queues.gpu.min_nodes must be >= 0, got -1"),
        ("[autoscale.queues.gpu]\nqueued_per_node = 0", "autoscale.queues.gpu.queued_per_node must be > 0, got 0.0"),
        ("[autoscale.queues.gpu]\ndown_backlog_fraction = 1.5", "down_backlog_fraction must be <= 1, got 1.5"),
        ("[autoscale.queues.gpu]\nmax_step_up = 0", "autoscale.queues.gpu.max_step_up must be >= 1, got 0"),
        ("[autoscale.queues.gpu]\nup_window_s = nan", "autoscale.queues.gpu.up_window_s must be a finite number"),
        (
            "[autoscale.queues.gpu]\nmin_nodes = 5\nmax_nodes = 2",
            "autoscale.queues.gpu.min_nodes (5) must not exceed autoscale.queues.gpu.max_nodes (2)",
        ),
        ("[autoscale.queues.gpu]\nproviders = []", "autoscale.queues.gpu.providers must name at least one provider"),
        ("[autoscale.queues.gpu]\nproviders = ['local', 'local']", "lists a provider twice"),
        (
            "[autoscale.queues.gpu]\nproviders = ['runpod', 'local']",
            "autoscale.queues.gpu.providers: unknown provider 'runpod' (registered: kubernetes, local)",
        ),
        ("[autoscale.queues.tpu]\nmax_nodes = 1", "autoscale.queues.tpu: no such queue"),
        ("[autoscale.providers.nomad]\nregion = 'x'", "autoscale.providers.nomad: unknown provider"),
        ("[autoscale.providers]\nlocal = 3", "autoscale.providers must be a table of tables"),
    ],
)
def test_ranges_and_cross_checks_name_the_key(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_autoscale_config(load(text), provider_names={"local", "kubernetes"}, queues=["gpu", "cpu"])


def test_every_setting_has_help_text():
    for cls in (AutoscaleConfig, QueuePolicy):
        for f in fields(cls):
            assert len(f.metadata.get("help", "")) > 20, f"{cls.__name__}.{f.name}"


@dataclass
class ExampleSettings:
    function: str = field(metadata={"help": "required"})
    region: str = field(default="eu", metadata={"help": "where"})


def test_provider_settings_require_their_required_keys():
    assert settings_from_mapping(ExampleSettings, {"function": "f"}, "x.").region == "eu"
    with pytest.raises(ConfigError, match=re.escape("missing setting autoscale.providers.p.function")):
        settings_from_mapping(ExampleSettings, {"region": "us"}, "autoscale.providers.p.")
