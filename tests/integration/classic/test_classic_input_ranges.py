"""Out-of-range numbers on a real classic server: a 400 naming the field, not OpenCV's text in a 500.

Before the range checks, ``hdStrategy=Resize`` with ``hdStrategyResizeLimit=0`` answered a 500 with
``OpenCV(...) resize ... inv_scale_x > 0`` and a crop margin of -100 a 500 with ``'NoneType' object is
not subscriptable``. The image here (64x48) is larger than the limits and trigger sizes used, so each
strategy really runs when the value is valid.
"""

from __future__ import annotations

import pytest

from .media_helpers import assert_plain_text_error, decode, image_bytes, mask_bytes, post_inpaint


@pytest.mark.parametrize(
    ("form", "field", "rule"),
    [
        ({"hdStrategy": "Resize", "hdStrategyResizeLimit": "0"}, "hdStrategyResizeLimit", "> 0"),
        ({"hdStrategy": "Resize", "hdStrategyResizeLimit": "-16"}, "hdStrategyResizeLimit", "> 0"),
        (
            {"hdStrategy": "Crop", "hdStrategyCropTrigerSize": "32", "hdStrategyCropMargin": "-100"},
            "hdStrategyCropMargin",
            ">= 0",
        ),
        ({"hdStrategy": "Crop", "hdStrategyCropTrigerSize": "-1"}, "hdStrategyCropTrigerSize", ">= 0"),
        ({"cv2Radius": "-1"}, "cv2Radius", ">= 0"),
        ({"sdSteps": "0"}, "sdSteps", ">= 1"),
        ({"sdScale": "0"}, "sdScale", "> 0 and <= 1"),
        ({"sdMaskBlur": "-2"}, "sdMaskBlur", ">= 0"),
        ({"useCroper": "true", "croperWidth": "0"}, "croperWidth", "> 0"),
    ],
)
def test_out_of_range_values_are_400_plain_text_naming_the_field(classic_server, form, field, rule):
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form=form)
    assert_plain_text_error(response, 400, f"Invalid value for {field}: {form[field]} (must be {rule})")
    assert "OpenCV" not in response.text and "NoneType" not in response.text


def test_negative_seed_other_than_minus_one_is_400(classic_server):
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form={"sdSeed": "-2"})
    assert_plain_text_error(response, 400, "Invalid value for sdSeed: -2")


@pytest.mark.parametrize(
    "form",
    [
        {"hdStrategy": "Resize", "hdStrategyResizeLimit": "16"},
        {"hdStrategy": "Crop", "hdStrategyCropTrigerSize": "0", "hdStrategyCropMargin": "0"},
        {"cv2Radius": "0", "sdSeed": "0"},
        {"useCroper": "false", "croperWidth": "0", "croperHeight": "0"},
    ],
)
def test_the_edges_of_each_range_still_inpaint(classic_server, form):
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form=form)
    assert response.status_code == 200, response.text
    assert decode(response.content).shape == (48, 64, 3)
