"""``validate_task`` and ``execute_task``: the shared path of classic and distributed modes."""

from __future__ import annotations

import numpy as np
import pytest

from lama_cleaner import pipeline
from lama_cleaner.errors import ClientError, InferenceError, NotFound, OutOfMemory
from lama_cleaner.inpaint_request import default_form
from lama_cleaner.models.opencv import OpenCV2
from lama_cleaner.tasks import TaskRequest

from .images import decode, encode, mask_bytes, pixels


def inpaint_task(image: bytes, mask: bytes, **form: str) -> TaskRequest:
    return TaskRequest(kind="inpaint", name="cv2", form=default_form(**form), files={"image": image, "mask": mask})


def run(task, models, image_plugins, config):
    return pipeline.execute_task(task, models=models, image_plugins=image_plugins, config=config)


def test_validate_accepts_a_good_request(config):
    pipeline.validate_task(inpaint_task(encode(pixels(20, 30)), mask_bytes(20, 30, [(1, 1, 5, 5)])), config)


def test_validate_reports_mask_mismatch_with_upstream_text(config):
    task = inpaint_task(encode(pixels(20, 30)), mask_bytes(21, 30, []))
    with pytest.raises(ClientError) as err:
        pipeline.validate_task(task, config)
    assert str(err.value) == "Mask shape(21, 30) not queal to Image shape(20, 30)"


def test_validate_compares_sizes_after_exif_rotation(config):
    image = encode(pixels(20, 30), "JPEG", orientation=6)  # upright: 30 high, 20 wide
    pipeline.validate_task(inpaint_task(image, mask_bytes(30, 20, [])), config)
    with pytest.raises(ClientError, match=r"^Mask shape\(20, 30\) not queal to Image shape\(30, 20\)$"):
        pipeline.validate_task(inpaint_task(image, mask_bytes(20, 30, [])), config)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.files.pop("mask"), "Missing form field: mask"),
        (lambda t: t.form.pop("sdSteps"), "Missing form field: sdSteps"),
        (lambda t: t.form.update(cv2Flag="BAD"), "Invalid value for cv2Flag: BAD"),
        (lambda t: t.files.update(image=b"garbage"), "Invalid image: cannot decode 'image'"),
    ],
)
def test_validate_rejects_bad_input_with_a_short_400(config, mutate, message):
    task = inpaint_task(encode(pixels(8, 8)), mask_bytes(8, 8, []))
    mutate(task)
    with pytest.raises(ClientError) as err:
        pipeline.validate_task(task, config)
    assert str(err.value) == message and err.value.status == 400


def test_validate_plugin_fields(config, image_plugins):
    task = TaskRequest(kind="plugin", name="MakeGIF", files={"image": encode(pixels(8, 8))})
    with pytest.raises(ClientError, match="^Missing form field: filename$"):
        pipeline.validate_task(task, config)
    with pytest.raises(NotFound, match="^Plugin not found$"):
        pipeline.validate_task(TaskRequest(kind="plugin", name="Nope"), config, image_plugins)


def test_execute_cv2_returns_png_with_seed_header_and_is_deterministic(models, image_plugins, config):
    image = encode(pixels(40, 50, seed=2))
    task = inpaint_task(image, mask_bytes(40, 50, [(10, 10, 30, 20)]), sdSeed="77", hdStrategy="Original")
    first = run(task, models, image_plugins, config)
    second = run(task, models, image_plugins, config)
    assert first.mimetype == "image/png"
    assert first.headers == {"X-Seed": "77"}
    assert first.body == second.body
    out = np.asarray(decode(first.body))
    src = pixels(40, 50, seed=2)
    outside = np.ones((40, 50), bool)
    outside[10:20, 10:30] = False
    np.testing.assert_array_equal(out[outside], src[outside])


def test_execute_random_seed_is_reported(models, image_plugins, config):
    out = run(inpaint_task(encode(pixels(8, 8)), mask_bytes(8, 8, [])), models, image_plugins, config)
    assert 1 <= int(out.headers["X-Seed"]) <= 999_999_999


def test_execute_keeps_input_format_alpha_and_size(models, image_plugins, config):
    rgba = pixels(16, 24, channels=4)
    out = run(
        inpaint_task(encode(rgba, "WEBP", lossless=True), mask_bytes(16, 24, [(2, 2, 6, 6)])),
        models,
        image_plugins,
        config,
    )
    assert out.mimetype == "image/webp"
    img = decode(out.body)
    assert img.mode == "RGBA" and img.size == (24, 16)
    np.testing.assert_array_equal(np.asarray(img)[:, :, 3], rgba[:, :, 3])


def test_execute_mask_mismatch(models, image_plugins, config):
    with pytest.raises(ClientError, match="not queal"):
        run(inpaint_task(encode(pixels(8, 8)), mask_bytes(8, 9, [])), models, image_plugins, config)


def _boom(text):
    def forward(self, image_rgb, mask, req):
        raise RuntimeError(text)

    return forward


def test_runtime_errors_are_mapped(models, image_plugins, config, monkeypatch):
    task = inpaint_task(encode(pixels(8, 8)), mask_bytes(8, 8, [(1, 1, 3, 3)]), hdStrategy="Original")
    monkeypatch.setattr(OpenCV2, "forward", _boom("CUDA out of memory. Tried to allocate 2 GiB"))
    with pytest.raises(OutOfMemory) as err:
        run(task, models, image_plugins, config)
    assert str(err.value) == "CUDA out of memory" and err.value.status == 500
    monkeypatch.setattr(OpenCV2, "forward", _boom("shape mismatch in layer 3"))
    with pytest.raises(InferenceError) as err2:
        run(task, models, image_plugins, config)
    assert str(err2.value) == "shape mismatch in layer 3"


def test_plugin_tasks_go_to_the_plugin(models, image_plugins, config):
    task = TaskRequest(
        kind="plugin",
        name="MakeGIF",
        form={"filename": "x.gif"},
        files={"image": encode(pixels(10, 10)), "clean_img": encode(pixels(10, 10, seed=9))},
    )
    out = run(task, models, image_plugins, config)
    assert out.mimetype == "image/gif"
    with pytest.raises(NotFound, match="^Plugin not found$"):
        run(TaskRequest(kind="plugin", name="RemoveBG"), models, image_plugins, config)
