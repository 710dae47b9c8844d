"""The standalone scheduler routes like the embedded one (``--device cpu`` is a CPU deployment)."""

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.scheduler.main import build_resource_class_of, scheduler_main
from lama_cleaner.plugins.manager import create_plugin_manager


def test_cpu_deployment_routes_cpu_capable_models_to_cpu():
    pm = create_plugin_manager([], autoload=False)
    on_cpu = build_resource_class_of(pm, Config(device="cpu"))
    on_gpu = build_resource_class_of(pm, Config(device="cuda"))
    assert on_cpu("inpaint", "lama") == "cpu"
    assert on_gpu("inpaint", "lama") == "gpu"
    assert on_cpu("inpaint", "sd1.5") == "gpu", "diffusion models never run on CPU-only nodes"
    assert on_cpu("inpaint", "cv2") == on_gpu("inpaint", "cv2") == "cpu"
    assert on_cpu("inpaint", "no-such-model") is None


def test_device_flag_is_validated(capsys):
    try:
        scheduler_main(["--device", "tpu"])
    except SystemExit as exc:
        assert exc.code == 2
    else:  # pragma: no cover - argparse must refuse it
        raise AssertionError("--device tpu was accepted")
    assert "invalid choice" in capsys.readouterr().err
