"""The HD strategies (docs/compatibility.md#hd-strategies), applied once in ``InpaintModel.__call__``
for every erase model."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lama_cleaner.config import Config
from lama_cleaner.inpaint_request import InpaintRequest, default_form
from lama_cleaner.models import hd_strategy as hd
from lama_cleaner.models.base import InpaintModel
from lama_cleaner.models.opencv import OpenCV2

from .images import mask_array, pixels

FILL = 7


class Recorder(InpaintModel):
    """Paints the whole (padded) input with FILL and records what it was given."""

    name = "recorder"
    pad_mod = 8

    def __init__(self) -> None:
        super().__init__("cpu", Config())
        self.calls: list[tuple[int, ...]] = []

    def forward(self, image_rgb, mask, req):
        self.calls.append(image_rgb.shape)
        assert mask.shape[:2] == image_rgb.shape[:2]
        return np.full(image_rgb.shape, FILL, np.uint8)


def req(**form: str) -> InpaintRequest:
    return InpaintRequest.from_form(default_form(**form), rng=random.Random(0))


def test_padding_to_modulo_min_size_and_square():
    img = np.zeros((10, 13, 3), np.uint8)
    assert hd.pad_to_modulo(img, 8).shape == (16, 16, 3)
    assert hd.pad_to_modulo(img, 1).shape == (10, 13, 3)
    assert hd.pad_to_modulo(img, 8, min_size=32).shape == (32, 32, 3)
    assert hd.pad_to_modulo(np.zeros((8, 20, 1)), 8, square=True).shape == (24, 24, 1)
    padded = hd.pad_to_modulo(np.arange(3, dtype=np.uint8).reshape(1, 3, 1), 5)
    assert list(padded[0, :, 0]) == [0, 1, 2, 2, 1], "mirrored (symmetric) padding"


def test_crop_box_is_shifted_inside_then_clamped():
    # near the top-left corner: shifted right/down to keep its 50 px context
    assert hd.crop_box((0, 10, 10, 10), 20, (100, 100)) == (0, 0, 50, 50)
    # near the bottom-right corner: shifted left/up
    assert hd.crop_box((90, 85, 10, 10), 20, (100, 100)) == (50, 50, 100, 100)
    # bigger than the image: clamped to it
    assert hd.crop_box((40, 40, 20, 20), 100, (100, 100)) == (0, 0, 100, 100)
    # in the middle: grown symmetrically
    assert hd.crop_box((40, 40, 20, 10), 5, (100, 100)) == (35, 35, 65, 55)


def test_original_runs_once_on_the_padded_full_image():
    model = Recorder()
    image = pixels(30, 45)
    mask = mask_array(30, 45, [(5, 5, 15, 15)])
    out = model(image, mask, req(hdStrategy="Original"))
    assert model.calls == [(32, 48, 3)]
    assert out.shape == (30, 45, 3)
    assert (out[5:15, 5:15] == FILL).all()


def test_crop_inpaints_each_mask_region_separately_above_the_trigger():
    model = Recorder()
    image = pixels(200, 300)
    mask = mask_array(200, 300, [(10, 10, 30, 30), (250, 150, 280, 190)])
    out = model(image, mask, req(hdStrategy="Crop", hdStrategyCropTrigerSize="100", hdStrategyCropMargin="16"))
    assert len(model.calls) == 2
    assert all(h <= 80 and w <= 80 for h, w, _ in model.calls), "crops, not the full image"
    assert (out[10:30, 10:30] == FILL).all() and (out[150:190, 250:280] == FILL).all()


def test_crop_below_the_trigger_runs_on_the_full_image():
    model = Recorder()
    mask = mask_array(64, 64, [(10, 10, 20, 20)])
    model(pixels(64, 64), mask, req(hdStrategy="Crop", hdStrategyCropTrigerSize="64"))
    assert model.calls == [(64, 64, 3)]


def test_resize_downscales_to_the_limit_above_it():
    model = Recorder()
    image = pixels(100, 200)
    mask = mask_array(100, 200, [(50, 30, 150, 70)])
    out = model(image, mask, req(hdStrategy="Resize", hdStrategyResizeLimit="64"))
    assert model.calls == [(32, 64, 3)]
    assert out.shape == (100, 200, 3)
    assert (out[40:60, 70:130] == FILL).all(), "interior of the mask comes from the upscaled result"


def test_resize_below_the_limit_keeps_the_size():
    model = Recorder()
    model(pixels(40, 40), mask_array(40, 40, [(1, 1, 5, 5)]), req(hdStrategy="Resize", hdStrategyResizeLimit="40"))
    assert model.calls == [(40, 40, 3)]


@pytest.mark.parametrize(
    "form",
    [
        {"hdStrategy": "Original"},
        {"hdStrategy": "Crop", "hdStrategyCropTrigerSize": "50", "hdStrategyCropMargin": "8"},
        {"hdStrategy": "Resize", "hdStrategyResizeLimit": "57"},
    ],
)
@pytest.mark.parametrize("model_cls", [Recorder, OpenCV2])
def test_pixels_outside_the_mask_are_bit_identical(form, model_cls):
    model = Recorder() if model_cls is Recorder else OpenCV2("cpu", Config())
    image = pixels(90, 130, seed=5)
    mask = mask_array(90, 130, [(3, 3, 20, 25), (60, 50, 125, 88), (40, 10, 41, 11)])
    out_bgr = model(image, mask, req(**form))
    outside = mask == 0
    np.testing.assert_array_equal(out_bgr[:, :, ::-1][outside], image[outside])
    assert not np.array_equal(out_bgr[:, :, ::-1][~outside], image[~outside]), "the masked area did change"


def test_empty_mask_returns_the_input():
    out = OpenCV2("cpu", Config())(pixels(20, 20), np.zeros((20, 20), np.uint8), req(hdStrategy="Original"))
    np.testing.assert_array_equal(out[:, :, ::-1], pixels(20, 20))


def test_cv2_is_deterministic_and_honours_flag_and_radius():
    image, mask = pixels(60, 80, seed=8), mask_array(60, 80, [(20, 20, 50, 40)])
    ns = OpenCV2("cpu", Config())(image, mask, req(hdStrategy="Original"))
    again = OpenCV2("cpu", Config())(image.copy(), mask.copy(), req(hdStrategy="Original"))
    telea = OpenCV2("cpu", Config())(image, mask, req(hdStrategy="Original", cv2Flag="INPAINT_TELEA"))
    wide = OpenCV2("cpu", Config())(image, mask, req(hdStrategy="Original", cv2Radius="15"))
    np.testing.assert_array_equal(ns, again)
    assert not np.array_equal(ns, telea) and not np.array_equal(ns, wide)
