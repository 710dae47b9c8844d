"""The model registry (13 names, resource classes, clear "not supported" reasons) and device resolution."""

from __future__ import annotations

import pytest

from lama_cleaner.config import MODEL_NAMES, Config, ConfigError
from lama_cleaner.errors import ModelNotSupported, NotFound
from lama_cleaner.models import device
from lama_cleaner.models.registry import ModelRegistry, build_model_registry


def test_all_13_frontend_names_are_registered_in_order(pm):
    registry = build_model_registry(pm)
    assert registry.names() == MODEL_NAMES
    with pytest.raises(NotFound, match="^foo not implemented$"):
        registry.get("foo")


def test_model_metadata(pm):
    registry = build_model_registry(pm)
    for name in MODEL_NAMES:
        cls = registry.get(name)
        assert cls.resource_class == ("cpu" if name == "cv2" else "gpu"), name
        assert cls.memory_mb > 0, name
        assert cls.reports_steps == (name in ("sd1.5", "anything4", "realisticVision1.4", "sd2")), name


def test_only_cv2_and_lama_are_available(pm):
    registry = build_model_registry(pm)
    available = [n for n in MODEL_NAMES if registry.get(n).is_available(Config())[0]]
    assert available == ["lama", "cv2"]
    ok, reason = registry.get("sd2").is_available(Config())
    assert reason == "sd2 is not supported by this server yet (diffusion models need the diffusers backend)"
    ok, reason = registry.get("zits").is_available(Config())
    assert reason.startswith("zits is not supported by this server yet")
    with pytest.raises(ModelNotSupported) as err:
        registry.get("mat")("cpu", Config())
    assert err.value.status == 403


def test_diffusion_models_report_downloaded_like_upstream(pm, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    registry = build_model_registry(pm)
    assert registry.get("sd1.5").is_downloaded(Config()) is True
    assert registry.get("cv2").is_downloaded(Config()) is True
    assert registry.get("ldm").is_downloaded(Config()) is False


def test_first_registration_wins_so_plugins_can_override_builtins():
    from lama_cleaner.models.opencv import OpenCV2

    class MyCv2(OpenCV2):
        pass

    registry = ModelRegistry()
    registry.register(MyCv2)
    registry.register(OpenCV2)
    assert registry.get("cv2") is MyCv2


def test_register_rejects_bad_resource_class():
    from lama_cleaner.models.opencv import OpenCV2

    class Weird(OpenCV2):
        name, resource_class = "weird", "tpu"

    with pytest.raises(ValueError, match="resource_class"):
        ModelRegistry().register(Weird)


def test_resolve_device_cpu_and_unknown():
    assert device.resolve_device("cpu") == "cpu"
    assert device.resolve_device("CPU") == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        device.resolve_device("tpu")


def test_resolve_device_cuda_without_cuda(monkeypatch):
    class NoCuda:
        class cuda:  # noqa: N801 - mimics torch.cuda
            @staticmethod
            def is_available() -> bool:
                return False

    monkeypatch.setattr(device, "_torch", lambda: NoCuda)
    with pytest.raises(ConfigError) as err:
        device.resolve_device("cuda")
    assert str(err.value) == (
        "--device cuda was requested but CUDA is not available (torch missing or no GPU); use --device cpu"
    )
    monkeypatch.setattr(device, "_torch", lambda: None)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        device.resolve_device("cuda:0")


def test_resolve_device_cuda_index(monkeypatch):
    class TwoGpus:
        class cuda:  # noqa: N801 - mimics torch.cuda
            @staticmethod
            def is_available() -> bool:
                return True

            @staticmethod
            def device_count() -> int:
                return 2

    monkeypatch.setattr(device, "_torch", lambda: TwoGpus)
    assert device.resolve_device("cuda") == "cuda"
    assert device.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="only 2 CUDA device"):
        device.resolve_device("cuda:2")
