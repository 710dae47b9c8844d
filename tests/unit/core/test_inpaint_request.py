"""Form parsing: the 34 fields, lenient coercion (docs/compatibility.md#coercion), clear 400 messages,
per-request seeds."""

from __future__ import annotations

import random

import pytest

from lama_cleaner.errors import ClientError
from lama_cleaner.inpaint_request import InpaintRequest, default_form


def parse(**overrides: str) -> InpaintRequest:
    return InpaintRequest.from_form(default_form(**overrides), rng=random.Random(1))


def test_all_34_fields_with_exact_form_names():
    names = InpaintRequest.form_names()
    assert len(names) == 34 == len(set(names))
    assert "hdStrategyCropTrigerSize" in names and "controlnet_method" in names
    assert set(names) == set(default_form())


def test_frontend_defaults_parse_to_typed_values():
    req = parse()
    assert req.ldm_steps == 25 and req.hd_strategy == "Crop" and req.hd_strategy_crop_triger_size == 800
    assert req.zits_wireframe is True and req.use_croper is False
    assert req.sd_scale == 1.0 and req.p2p_image_guidance_scale == 1.5
    assert req.cv2_flag == "INPAINT_NS" and req.cv2_radius == 5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("25", 25), ("-1", -1), ("5.0", 5), (" 7 ", 7), ("1e2", 100)],
)
def test_int_coercion_accepts(raw, expected):
    assert parse(croperX=raw).croper_x == expected


@pytest.mark.parametrize("raw", ["12.5", "", "abc", "nan", "inf"])
def test_int_coercion_rejects(raw):
    with pytest.raises(ClientError) as err:
        parse(croperX=raw)
    assert str(err.value) == f"Invalid value for croperX: {raw}"
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("false", False),
        ("False", False),
        ("TRUE", True),
        ("yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("off", False),
    ],
)
def test_bool_coercion_accepts(raw, expected):
    assert parse(useCroper=raw).use_croper is expected


@pytest.mark.parametrize("raw", ["maybe", "", "2"])
def test_bool_coercion_rejects(raw):
    with pytest.raises(ClientError, match=f"^Invalid value for useCroper: {raw}$"):
        parse(useCroper=raw)


@pytest.mark.parametrize(("raw", "expected"), [("25", 25.0), ("-1", -1.0), ("5.0", 5.0), ("12.5", 12.5)])
def test_float_coercion_accepts(raw, expected):
    assert parse(sdStrength=raw).sd_strength == expected


@pytest.mark.parametrize("raw", ["", "x", "nan"])
def test_float_coercion_rejects(raw):
    with pytest.raises(ClientError, match="^Invalid value for sdStrength"):
        parse(sdStrength=raw)


@pytest.mark.parametrize(
    ("field", "raw"),
    [("hdStrategy", "Huge"), ("ldmSampler", "euler"), ("sdSampler", "k_dpm"), ("cv2Flag", "INPAINT_FOO")],
)
def test_enumerations_reject_unknown_values_with_400(field, raw):
    with pytest.raises(ClientError) as err:
        parse(**{field: raw})
    assert str(err.value) == f"Invalid value for {field}: {raw}"


def test_enumerations_are_case_insensitive_and_canonicalised():
    req = parse(hdStrategy="resize", cv2Flag="inpaint_telea", sdSampler="UNI_PC")
    assert (req.hd_strategy, req.cv2_flag, req.sd_sampler) == ("Resize", "INPAINT_TELEA", "uni_pc")


@pytest.mark.parametrize("field", ["ldmSteps", "hdStrategyCropTrigerSize", "prompt", "controlnet_method"])
def test_missing_field_is_a_400_naming_it(field):
    form = default_form()
    del form[field]
    with pytest.raises(ClientError) as err:
        InpaintRequest.from_form(form)
    assert str(err.value) == f"Missing form field: {field}"
    assert err.value.status == 400


def test_seed_minus_one_becomes_random_in_range_from_the_given_rng():
    a = InpaintRequest.from_form(default_form(), rng=random.Random(42))
    b = InpaintRequest.from_form(default_form(), rng=random.Random(42))
    assert a.sd_seed == b.sd_seed
    assert 1 <= a.sd_seed <= 999_999_999 and 1 <= a.paint_by_example_seed <= 999_999_999


def test_explicit_seed_is_kept_and_default_rng_is_per_request():
    assert parse(sdSeed="1234").sd_seed == 1234
    state = random.getstate()
    seeds = {InpaintRequest.from_form(default_form()).sd_seed for _ in range(5)}
    assert random.getstate() == state, "the global RNG must not be used"
    assert len(seeds) > 1
