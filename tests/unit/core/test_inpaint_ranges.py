"""Range checks of the numeric ``/inpaint`` fields: a value the pipeline cannot work with is a 400
naming the field and its range, raised while parsing the form, before any model or queue sees it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lama_cleaner.errors import ClientError
from lama_cleaner.inpaint_request import SEED_LIMIT, InpaintRequest, default_form
from lama_cleaner.models.opencv import OpenCV2

from .images import pixels


def parse(**overrides: str) -> InpaintRequest:
    return InpaintRequest.from_form(default_form(**overrides), rng=random.Random(1))


@pytest.mark.parametrize(
    ("field", "raw", "rule"),
    [
        ("hdStrategyResizeLimit", "0", "> 0"),
        ("hdStrategyResizeLimit", "-5", "> 0"),
        ("hdStrategyCropMargin", "-100", ">= 0"),
        ("hdStrategyCropTrigerSize", "-1", ">= 0"),
        ("ldmSteps", "0", ">= 1"),
        ("sdSteps", "-3", ">= 1"),
        ("paintByExampleSteps", "0", ">= 1"),
        ("p2pSteps", "0", ">= 1"),
        ("sdScale", "0", "> 0 and <= 1"),
        ("sdScale", "1.5", "> 0 and <= 1"),
        ("sdScale", "-1", "> 0 and <= 1"),
        ("sdMaskBlur", "-1", ">= 0"),
        ("paintByExampleMaskBlur", "-1", ">= 0"),
        ("sdGuidanceScale", "-0.5", ">= 0"),
        ("p2pImageGuidanceScale", "-1", ">= 0"),
        ("p2pGuidanceScale", "-1", ">= 0"),
        ("controlnet_conditioning_scale", "-0.1", ">= 0"),
        ("cv2Radius", "-1", ">= 0"),
    ],
)
def test_out_of_range_values_are_a_400_naming_field_and_range(field, raw, rule):
    with pytest.raises(ClientError) as err:
        parse(**{field: raw})
    assert str(err.value) == f"Invalid value for {field}: {raw} (must be {rule})"
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("hdStrategyResizeLimit", "1"),
        ("hdStrategyCropMargin", "0"),
        ("hdStrategyCropTrigerSize", "0"),
        ("ldmSteps", "1"),
        ("sdSteps", "1"),
        ("sdScale", "1"),
        ("sdScale", "0.5"),
        ("sdMaskBlur", "0"),
        ("sdGuidanceScale", "0"),
        ("cv2Radius", "0"),
        ("sdSeed", "-1"),
        ("sdSeed", "0"),
        ("sdSeed", str(SEED_LIMIT)),
        # Unbounded on purpose: clamped to the image, or ignored by upstream's pipeline.
        ("croperX", "-20"),
        ("croperY", "100000"),
        ("sdStrength", "-3"),
        ("paintByExampleGuidanceScale", "-1"),
    ],
)
def test_values_at_the_edge_of_their_range_are_accepted(field, raw):
    parse(**{field: raw})


@pytest.mark.parametrize("raw", ["-2", str(SEED_LIMIT + 1)])
def test_seeds_are_minus_one_or_within_numpys_range(raw):
    with pytest.raises(ClientError) as err:
        parse(sdSeed=raw)
    assert str(err.value) == f"Invalid value for sdSeed: {raw} (must be -1 or 0..{SEED_LIMIT})"
    assert err.value.status == 400


@pytest.mark.parametrize("field", ["croperWidth", "croperHeight"])
def test_the_croper_size_is_checked_only_when_the_croper_is_on(field):
    parse(useCroper="false", **{field: "0"})  # ignored by the pipeline: no reason to refuse it
    with pytest.raises(ClientError) as err:
        parse(useCroper="true", **{field: "0"})
    assert str(err.value) == f"Invalid value for {field}: 0 (must be > 0)"


@pytest.mark.parametrize(
    "override",
    [
        {"hdStrategy": "Resize", "hdStrategyResizeLimit": "1"},
        {"hdStrategy": "Crop", "hdStrategyCropTrigerSize": "0", "hdStrategyCropMargin": "0"},
    ],
)
def test_the_cv2_model_copes_with_every_edge_value(override):
    """The smallest accepted values still inpaint (a one-pixel mask with no crop margin, a resize
    limit of one pixel on a thin image): what the form lets through, the model must handle."""
    mask = np.zeros((10, 300, 1), np.uint8)
    mask[5, 150] = 255
    out = OpenCV2("cpu", None)(pixels(10, 300), mask, parse(**override))  # type: ignore[arg-type]
    assert out.shape == (10, 300, 3)
