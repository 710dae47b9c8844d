"""LaMa through the real loading path, with a tiny TorchScript module honouring big-lama's contract."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from lama_cleaner.config import Config
from lama_cleaner.inpaint_request import InpaintRequest, default_form
from lama_cleaner.models.download import ModelDownloadError

from .images import mask_array, pixels

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

from lama_cleaner.models.lama import LaMa  # noqa: E402


class TinyLama(torch.nn.Module):
    """Fills the hole with mid-grey; insists on LaMa's input contract (0..1 floats, binary mask, mod 8)."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert image.dim() == 4 and image.shape[1] == 3 and mask.shape[1] == 1
        assert image.shape[2] % 8 == 0 and image.shape[3] % 8 == 0
        assert float(image.max()) <= 1.0 and float(image.min()) >= 0.0
        assert bool(((mask == 0) | (mask == 1)).all())
        return image * (1 - mask) + mask * 0.5


@pytest.fixture
def tiny_lama(tmp_path):
    path = tmp_path / "tiny-lama.pt"
    torch.jit.script(TinyLama()).save(str(path))
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LAMA_MODEL_MD5", raising=False)


def req(**form: str) -> InpaintRequest:
    return InpaintRequest.from_form(default_form(**form), rng=random.Random(0))


def test_lama_loads_a_local_path_and_inpaints(tiny_lama, monkeypatch):
    monkeypatch.setenv("LAMA_MODEL_URL", str(tiny_lama))
    assert LaMa.is_available(Config()) == (True, "")
    assert LaMa.is_downloaded(Config())
    model = LaMa("cpu", Config())
    image = pixels(21, 30, seed=4)  # not a multiple of 8: padding is exercised
    mask = mask_array(21, 30, [(5, 5, 15, 12)])
    out_bgr = model(image, mask, req(hdStrategy="Original"))
    assert out_bgr.shape == (21, 30, 3)
    assert (out_bgr[5:12, 5:15] == 127).all(), "0.5 * 255, clipped and truncated like upstream"
    outside = mask == 0
    np.testing.assert_array_equal(out_bgr[:, :, ::-1][outside], image[outside])


def test_lama_warms_up_with_two_calls_that_keep_its_input_contract(tiny_lama, monkeypatch):
    """TorchScript optimises its graph on the second call: both happen at load, on valid input (TinyLama
    asserts LaMa's contract), without gradients."""
    monkeypatch.setenv("LAMA_MODEL_URL", str(tiny_lama))
    model = LaMa("cpu", Config())
    scripted = model.model
    calls = []

    def counting(image, mask):
        calls.append((tuple(image.shape), tuple(mask.shape), torch.is_grad_enabled()))
        return scripted(image, mask)

    model.model = counting
    model.warm_up()
    assert calls == [((1, 3, 256, 256), (1, 1, 256, 256), False)] * 2


def test_lama_output_is_bgr(tiny_lama, monkeypatch):
    class Red(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(image)
            out[:, 0] = 1.0
            return out

    path = tiny_lama.parent / "red.pt"
    torch.jit.script(Red()).save(str(path))
    monkeypatch.setenv("LAMA_MODEL_URL", str(path))
    out = LaMa("cpu", Config())(pixels(8, 8), mask_array(8, 8, [(0, 0, 8, 8)]), req(hdStrategy="Original"))
    assert out[0, 0].tolist() == [0, 0, 255], "RGB red comes back as BGR"


def _upstream_forward(model, image_rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """lama-cleaner 1.2.5's LaMa arithmetic (float32 on the host, then to the model), the oracle."""
    image = np.ascontiguousarray(image_rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
    mask_f = (mask.reshape(1, mask.shape[0], mask.shape[1]) > 0).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(image).unsqueeze(0), torch.from_numpy(mask_f).unsqueeze(0))
    result = np.clip(out[0].permute(1, 2, 0).numpy() * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(result[:, :, ::-1])


def test_lama_converts_on_the_device_with_upstreams_arithmetic_bit_for_bit(tiny_lama, monkeypatch):
    """uint8 goes to the device and is converted there; the model sees exactly the contiguous float
    tensors 1.2.5 built on the host (every byte value, x / 255 as a true division), and the result is
    clipped and truncated exactly as 1.2.5 did, values outside 0..1 included."""

    class Stretch(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image * 1.7 - 0.3 + 0.25 * mask

    path = tiny_lama.parent / "stretch.pt"
    torch.jit.script(Stretch()).save(str(path))
    monkeypatch.setenv("LAMA_MODEL_URL", str(path))
    model = LaMa("cpu", Config())
    scripted = model.model
    seen = []

    def recording(image, mask):
        seen.append((image.clone(), mask.clone(), image.is_contiguous(), mask.is_contiguous()))
        return scripted(image, mask)

    model.model = recording
    image = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)  # all 256 values
    mask = mask_array(48, 64, [(8, 8, 40, 30)])[:, :, None]
    out = model.forward(image, mask, req())

    expected_image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0)
    got_image, got_mask, image_contiguous, mask_contiguous = seen[0]
    assert image_contiguous and mask_contiguous
    assert got_image.dtype == torch.float32 and torch.equal(got_image[0], expected_image)
    assert torch.equal(got_mask[0, 0], torch.from_numpy((mask[:, :, 0] > 0).astype(np.float32)))
    expected = _upstream_forward(scripted, image, mask)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255, "the clip was exercised at both ends"


def test_corrupt_cached_weights_are_deleted_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LAMA_MODEL_URL", raising=False)
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(b"the real thing").hexdigest())
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated garbage")
    assert LaMa.is_downloaded(Config())
    with pytest.raises(ModelDownloadError, match="corrupt and have been deleted"):
        LaMa("cpu", Config())
    assert not cached.exists()


def test_lama_downloads_with_md5_into_the_hub_cache(tiny_lama, tmp_path, monkeypatch, http_files):
    base, files, hits = http_files
    data = tiny_lama.read_bytes()
    files["/add_big_lama/big-lama.pt"] = data
    monkeypatch.setenv("LAMA_MODEL_URL", f"{base}/add_big_lama/big-lama.pt")
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(data).hexdigest())
    assert not LaMa.is_downloaded(Config())
    LaMa("cpu", Config())
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "big-lama.pt").read_bytes() == data
    assert LaMa.is_downloaded(Config())
    LaMa("cpu", Config())
    assert hits == ["/add_big_lama/big-lama.pt"]


def test_lama_md5_mismatch_raises_and_leaves_nothing(tiny_lama, tmp_path, monkeypatch, http_files):
    base, files, _ = http_files
    files["/big-lama.pt"] = tiny_lama.read_bytes()
    monkeypatch.setenv("LAMA_MODEL_URL", f"{base}/big-lama.pt")
    monkeypatch.setenv("LAMA_MODEL_MD5", "0" * 32)
    with pytest.raises(ModelDownloadError, match="md5 mismatch"):
        LaMa("cpu", Config())
    assert not LaMa.is_downloaded(Config())
