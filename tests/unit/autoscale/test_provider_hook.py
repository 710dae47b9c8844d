"""The ``register_scaling_providers`` hook: built-ins and a third-party provider through a real pluggy manager."""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field

import pluggy
import pytest

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.autoscale import hookspecs
from lama_cleaner.plugins.autoscale.config import AutoscaleConfig, QueuePolicy
from lama_cleaner.plugins.autoscale.providers import builtin
from lama_cleaner.plugins.autoscale.providers.base import Capacity, ProviderContext, ScalingProvider
from lama_cleaner.plugins.autoscale.providers.local import LocalProvider
from lama_cleaner.plugins.autoscale.providers.registry import build_providers, collect_provider_classes
from lama_cleaner.plugins.hookspecs import PROJECT, hookimpl


@dataclass
class NomadSettings:
    job: str = field(default="lama-node", metadata={"help": "Nomad job to scale."})
    max_count: int = field(default=3, metadata={"help": "Most allocations.", "minimum": 0})


class NomadProvider(ScalingProvider):
    """A third party's provider, as a plugin would ship it."""

    name = "nomad"
    settings_type = NomadSettings

    def __init__(self, settings, context):
        self.settings, self.context = settings, context

    def capacity(self, queue):
        return Capacity(self.settings.max_count, 0)

    def start(self, queue, count):
        return []

    def release(self, instances):
        return None

    def state(self):
        return {"job": self.settings.job}


def third_party_plugin(*classes) -> types.SimpleNamespace:
    @hookimpl
    def register_scaling_providers(config):
        return list(classes)

    return types.SimpleNamespace(register_scaling_providers=register_scaling_providers)


def manager(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)  # what the autoscale plugin does through the core's add_hookspecs
    pm.register(builtin, name="autoscale-builtin-providers")
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"third-party-{i}")
    return pm


def test_builtins_and_a_third_party_provider_are_collected_and_built_from_config():
    classes = collect_provider_classes(manager(third_party_plugin(NomadProvider)))
    assert sorted(classes) == ["aliyun-fc", "aws-lambda", "kubernetes", "local", "nomad"]
    config = AutoscaleConfig(
        queues={"gpu": QueuePolicy(providers=["nomad", "local"])},
        providers={"nomad": {"job": "lama-gpu", "max-count": 5}, "kubernetes": {"namespace": "unused"}},
    )
    built = build_providers(config, classes, ProviderContext(scheduler="tcp://127.0.0.1:5570"))
    assert sorted(built) == ["local", "nomad"]  # only what some queue names is built
    assert built["nomad"].settings == NomadSettings(job="lama-gpu", max_count=5)
    assert isinstance(built["local"], LocalProvider)


def test_provider_settings_are_checked_with_the_full_key():
    classes = collect_provider_classes(manager(third_party_plugin(NomadProvider)))
    context = ProviderContext(scheduler="tcp://127.0.0.1:5570")
    for table, message in [
        ({"jobs": "x"}, "unknown setting autoscale.providers.nomad.jobs"),
        ({"max_count": "3"}, "autoscale.providers.nomad.max_count must be an integer"),
        ({"max_count": -1}, "autoscale.providers.nomad.max_count must be >= 0"),
    ]:
        config = AutoscaleConfig(queues={"gpu": QueuePolicy(providers=["nomad"])}, providers={"nomad": table})
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_providers(config, classes, context)


def test_two_providers_with_one_name_and_non_providers_are_refused():
    class OtherLocal(NomadProvider):
        name = "local"

    with pytest.raises(ConfigError, match="two scaling providers are named 'local'"):
        collect_provider_classes(manager(third_party_plugin(OtherLocal)))
    with pytest.raises(ConfigError, match="not a ScalingProvider subclass"):
        collect_provider_classes(manager(third_party_plugin(object)))


def test_the_builtin_registry_imports_no_cloud_sdk():
    import subprocess
    import sys

    code = (
        "import sys; import lama_cleaner.plugins.autoscale.providers.builtin as b; "
        "print(sorted(b.builtin_provider_classes())); "
        "print([m for m in ('kubernetes', 'boto3', 'botocore', 'alibabacloud_fc20230330') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["['aliyun-fc', 'aws-lambda', 'kubernetes', 'local']", "[]"]
