"""The random-weight Big-LaMa stand-in of ``benchmarks/bench_gpu.py``: Big-LaMa's size, traceable, and
loadable by the product's ``lama`` model through ``LAMA_MODEL_URL`` like the real ``big-lama.pt``."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.ffc_generator import FFCResNetGenerator, parameter_count, traced_big_lama  # noqa: E402
from lama_cleaner.config import Config  # noqa: E402
from lama_cleaner.inpaint_request import InpaintRequest, default_form  # noqa: E402
from lama_cleaner.models.lama import LaMa  # noqa: E402

TINY = {"ngf": 8, "n_blocks": 2}


def test_full_configuration_has_big_lamas_parameter_count():
    assert 50_500_000 < parameter_count(FFCResNetGenerator()) < 51_500_000


def test_tiny_generator_traces_and_keeps_unmasked_pixels_at_another_size():
    model = traced_big_lama(32, **TINY)
    image = torch.rand(1, 3, 48, 40)
    mask = (torch.rand(1, 1, 48, 40) > 0.7).float()
    with torch.no_grad():
        out = model(image, mask)
    assert out.shape == (1, 3, 48, 40)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out * (1 - mask), image * (1 - mask))


@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning")  # big-lama.pt's format
def test_the_lama_model_loads_it_as_big_lama(tmp_path, monkeypatch):
    path = tmp_path / "big-lama.pt"
    torch.jit.save(traced_big_lama(32, **TINY), str(path))
    monkeypatch.setenv("LAMA_MODEL_URL", str(path))
    model = LaMa("cpu", Config())
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
    mask = np.zeros((30, 44, 1), np.uint8)
    mask[10:20, 10:30] = 255
    req = InpaintRequest.from_form(default_form(hdStrategy="Original"), rng=random.Random(0))
    out = model(image, mask, req)
    assert out.shape == (30, 44, 3)
    np.testing.assert_array_equal(out[mask[:, :, 0] == 0], image[:, :, ::-1][mask[:, :, 0] == 0])


def test_bench_gpu_says_why_and_exits_0_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the benchmark would run")
    from benchmarks import bench_gpu

    assert bench_gpu.main([]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out


def test_bench_gpu_pipeline_depths_resolve_auto_per_device():
    from benchmarks.bench_gpu import parse_depths

    assert parse_depths("1,auto", "cpu") == [1]  # auto is 1 on a CPU: measured once
    assert parse_depths("1,auto", "cuda") in ([1, 2], [1, 3])
    assert parse_depths("3, 1 ,3", "cuda") == [3, 1]


def test_bench_gpu_node_counts_keep_each_multi_node_run_once_in_order():
    from benchmarks.bench_gpu import node_counts

    assert node_counts("4") == [4]
    assert node_counts("2,4,2") == [2, 4]
    assert node_counts("0") == []  # 1 or less: the one-node runs only
    assert node_counts("1,3") == [3]
