"""docs/scaling.md documents every setting (with its default), every hook, and its examples load."""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, fields

import pytest

from lama_cleaner.plugins.autoscale import hookspecs
from lama_cleaner.plugins.autoscale.config import (
    AutoscaleConfig,
    QueuePolicy,
    autoscale_config_from_mapping,
    validate_autoscale_config,
)
from lama_cleaner.plugins.autoscale.providers.aliyun_fc import FunctionComputeSettings
from lama_cleaner.plugins.autoscale.providers.aws_lambda import LambdaSettings
from lama_cleaner.plugins.autoscale.providers.base import ProviderContext
from lama_cleaner.plugins.autoscale.providers.builtin import builtin_provider_classes
from lama_cleaner.plugins.autoscale.providers.kubernetes import KubernetesSettings
from lama_cleaner.plugins.autoscale.providers.local import LocalSettings
from lama_cleaner.plugins.autoscale.serverless.payload import InstancePayload
from tests.support.server_process import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
SECTIONS = {
    AutoscaleConfig: "### `[autoscale]`",
    QueuePolicy: "### `[autoscale.queues.<queue>]`",
    LocalSettings: "### `local`",
    KubernetesSettings: "### `kubernetes`",
    LambdaSettings: "### `aws-lambda`",
    FunctionComputeSettings: "### `aliyun-fc`",
}


def section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n### ", start + len(title))
    return DOC[start : end if end > 0 else None]


def shown(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`".replace("'", '"')


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_every_setting_is_documented_with_its_default(cls):
    text = section(SECTIONS[cls])
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        row = re.search(rf"^\| `{f.name}` \| ([^|]+) \|", text, re.M)
        assert row, f"{cls.__name__}.{f.name} is not in the table under {SECTIONS[cls]}"
        assert row.group(1).strip() == shown(default), f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize("hook", ["register_scaling_providers", "scaling_decision", "scaling_provider_event"])
def test_every_hook_is_documented(hook):
    assert hasattr(hookspecs, hook)
    assert re.search(rf"^### `{hook}\(", DOC, re.M), hook


def test_documented_hooks_are_all_the_hooks():
    specs = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "lama_cleaner_spec")}
    assert specs == {"register_scaling_providers", "scaling_decision", "scaling_provider_event"}


def test_the_toml_examples_load_and_validate():
    blocks = re.findall(r"```toml\n(.*?)```", DOC, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        data = tomllib.loads(block)
        config = autoscale_config_from_mapping(data["autoscale"])
        classes = builtin_provider_classes()
        validate_autoscale_config(config, provider_names=classes, queues=["gpu", "cpu"])
        for name, table in config.providers.items():
            if name != "kubernetes":  # needs a cluster (or a kubeconfig) to be built
                classes[name].from_config(table, ProviderContext(scheduler="tcp://127.0.0.1:5570"))


def test_the_documented_payload_is_what_a_provider_sends():
    example = re.search(r'```json\n(\{"kind": "lama-cleaner-node".*?)```', DOC, re.S).group(1)
    payload = InstancePayload.from_json(example)
    assert payload.queues == ("cpu",) and payload.labels["autoscale.instance"] == payload.instance_id
    assert InstancePayload.from_json(payload.to_json()) == payload
