"""The checks ``lama-cleaner node`` runs before it connects: which device it runs on, and which
models it offers (with the real model registry and the real ``resolve_device``)."""

from __future__ import annotations

import logging

import pytest

from lama_cleaner.config import Config, ConfigError
from lama_cleaner.models.device import CUDA_MISSING, has_cuda
from lama_cleaner.models.registry import build_model_registry
from lama_cleaner.plugins.distributed.node.capabilities import available_models
from lama_cleaner.plugins.distributed.node.main import node_device
from lama_cleaner.plugins.manager import create_plugin_manager

no_cuda = pytest.mark.skipif(has_cuda(), reason="this machine has CUDA: cuda is a usable device here")


@pytest.fixture
def registry():
    return build_model_registry(create_plugin_manager(autoload=False))


@no_cuda
def test_an_explicit_cuda_flag_without_a_gpu_is_refused():
    with pytest.raises(ConfigError) as err:
        node_device("cuda", "cpu")
    assert str(err.value) == CUDA_MISSING


@no_cuda
def test_the_configured_cuda_default_still_falls_back_to_cpu():
    """A bare ``lama-cleaner node`` (device from the config, ``cuda`` by default) starts anywhere."""
    assert Config().device == "cuda"
    assert node_device(None, Config().device) == "cpu"


def test_an_explicit_cpu_wins_over_the_config():
    assert node_device("cpu", "cuda") == "cpu"


def test_without_models_every_available_one_is_offered_in_registry_order(registry):
    assert available_models(registry, Config()) == ["lama", "cv2"]


def test_requested_models_keep_registry_order_and_unavailable_ones_are_warned_about(registry, caplog):
    with caplog.at_level(logging.WARNING, logger="lama_cleaner.plugins.distributed.node.capabilities"):
        assert available_models(registry, Config(), ["cv2", "sd1.5", "lama", "cv2"]) == ["lama", "cv2"]
    assert any("sd1.5" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("wanted", "unknown"), [(["nonexistent"], "model nonexistent"), (["x", "cv2", "y"], "models x, y")]
)
def test_unknown_requested_models_are_refused_naming_them_and_the_known_ones(registry, wanted, unknown):
    with pytest.raises(ConfigError) as err:
        available_models(registry, Config(), wanted)
    assert str(err.value).startswith(f"--models: unknown {unknown}; known models: lama, ldm, ")
    assert "cv2" in str(err.value)


def test_requested_models_that_all_cannot_run_here_are_refused(registry):
    with pytest.raises(ConfigError) as err:
        available_models(registry, Config(), ["sd1.5", "ldm"])
    message = str(err.value)
    assert message.startswith("--models: none of them can run on this node (ldm: ")
    assert "sd1.5: " in message and message.endswith("it could offer: lama, cv2")
