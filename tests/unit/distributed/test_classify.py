"""``node.inference.classify``: which failures a node reports as retryable, and with which status.

Each exception is raised for real (OpenCV, Pillow, numpy and the real ``pipeline.execute_task`` with
the cv2 model), so the test sees what a node's inference child sees, including the ``InferenceError``
wrapping that ``execute_task`` puts around foreign exceptions.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from lama_cleaner import pipeline
from lama_cleaner.config import Config
from lama_cleaner.errors import ClientError, InferenceError, ModelNotSupported, NotFound, OutOfMemory
from lama_cleaner.image_plugins.registry import build_image_plugin_registry
from lama_cleaner.inpaint_request import default_form
from lama_cleaner.models.manager import ModelManager
from lama_cleaner.models.registry import build_model_registry
from lama_cleaner.plugins.distributed.node.inference import classify
from lama_cleaner.plugins.manager import create_plugin_manager
from lama_cleaner.tasks import TaskRequest


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the exception itself is the test's input
        return exc
    raise AssertionError("expected an exception")


def _wrapped(exc: BaseException) -> InferenceError:
    """What ``pipeline.execute_task`` raises for a foreign exception ``exc``."""
    try:
        raise pipeline.map_runtime_error(exc) from exc
    except InferenceError as wrapped:
        return wrapped


def _cv2_error() -> BaseException:
    return _raised(lambda: cv2.resize(np.zeros((4, 4), np.uint8), (0, 0), fx=0, fy=0))


def _pil_error() -> BaseException:
    return _raised(lambda: Image.open(io.BytesIO(b"not an image at all")))


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ClientError("Invalid value for cv2Radius: -1"), 400),
        (NotFound("nope not implemented"), 404),
        (ModelNotSupported("sd1.5 is not supported"), 403),
    ],
)
def test_client_errors_are_final_with_their_status(exc, status):
    assert classify(exc) == (exc.message, False, status)


@pytest.mark.parametrize(
    "make",
    [
        _cv2_error,
        lambda: _raised(lambda: np.zeros((2, 2)).reshape(3)),  # ValueError
        lambda: _raised(lambda: int([])),  # TypeError
        lambda: _raised(lambda: [][1]),  # IndexError
        lambda: _raised(lambda: 1 // 0),  # ZeroDivisionError
    ],
    ids=["cv2.error", "ValueError", "TypeError", "IndexError", "ZeroDivisionError"],
)
def test_deterministic_pipeline_errors_are_final_500s_bare_or_wrapped(make):
    exc = make()
    message, retryable, status = classify(exc)
    assert (retryable, status) == (False, 500), type(exc)
    assert message == (str(exc) or type(exc).__name__)
    wrapped = _wrapped(exc)
    assert classify(wrapped) == (wrapped.message, False, 500)


def test_an_undecodable_image_that_reaches_it_blames_the_input():
    exc = _pil_error()
    assert classify(exc)[1:] == (False, 400)
    assert classify(_wrapped(exc))[1:] == (False, 400)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        OSError("No space left on device"),
        InferenceError("CUDA error: launch failure"),
    ],
)
def test_process_level_and_unknown_failures_stay_retryable(exc):
    assert classify(exc)[1:] == (True, 500)
    if not isinstance(exc, InferenceError):
        assert classify(_wrapped(exc))[1:] == (True, 500)


def test_out_of_memory_stays_retryable_in_every_form():
    assert classify(OutOfMemory()) == ("CUDA out of memory", True, 500)
    assert classify(_wrapped(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")))[1] is True
    assert classify(MemoryError()) == ("Out of memory", True, 500)
    assert classify(_wrapped(MemoryError())) == ("Out of memory", True, 500)


def test_a_one_pixel_mask_with_no_crop_margin_inpaints():
    """It used to give an empty crop box, so the cv2 model failed with a TypeError on every attempt
    (which ``classify`` made final); the box is now at least one pixel wide and the task succeeds."""
    config = Config(model="cv2", device="cpu")
    pm = create_plugin_manager(autoload=False)
    models = ModelManager(build_model_registry(pm), config, "cpu")
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[20, 20] = 255
    form = default_form(hdStrategy="Crop", hdStrategyCropTrigerSize="10", hdStrategyCropMargin="0")
    task = TaskRequest(kind="inpaint", name="cv2", form=form, files={"image": _png(image), "mask": _png(mask)})
    plugins = build_image_plugin_registry(pm, config)
    out = pipeline.execute_task(task, models=models, image_plugins=plugins, config=config)
    assert out.mimetype == "image/png" and out.body[:8] == b"\x89PNG\r\n\x1a\n"
