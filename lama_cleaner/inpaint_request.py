"""The 34 form fields of ``POST /inpaint`` (docs/compatibility.md#inpaint-form) parsed into one typed object.

Upstream reads every field with ``request.form[...]`` (so all are required) and coerces them with pydantic.
We accept a lenient superset of what pydantic v1 and v2 accept (docs/compatibility.md#coercion), because third-party
scripts send things like Python's ``False`` or ``5.0``; anything we cannot use is a short 400 message
instead of upstream's 500 page. That includes well-typed values the pipeline cannot work with (a resize
limit of 0, a negative crop margin, zero steps): each numeric field carries the range it must fall in,
checked here, so the web server refuses such a request before it is queued or retried anywhere.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ClientError

HD_STRATEGIES = ("Original", "Resize", "Crop")
LDM_SAMPLERS = ("ddim", "plms")
SD_SAMPLERS = ("ddim", "pndm", "k_lms", "k_euler", "k_euler_a", "dpm++", "uni_pc")
CV2_FLAGS = ("INPAINT_NS", "INPAINT_TELEA")
SEED_MIN, SEED_MAX = 1, 999_999_999
SEED_LIMIT = 2**32 - 1
"""Largest explicit seed: upstream seeds numpy too, whose generator takes 0..2**32-1 only."""

_TRUE = frozenset({"true", "1", "yes", "y", "on", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "f"})


def _bad(form_name: str, raw: str) -> ClientError:
    return ClientError(f"Invalid value for {form_name}: {raw}")


def parse_int(raw: str, form_name: str) -> int:
    """Integers, also written as integral floats (``"5.0"``, pydantic v2 accepts those)."""
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise _bad(form_name, raw) from None
    if not math.isfinite(value) or not value.is_integer():
        raise _bad(form_name, raw)
    return int(value)


def parse_float(raw: str, form_name: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise _bad(form_name, raw) from None
    if not math.isfinite(value):
        raise _bad(form_name, raw)
    return value


def parse_bool(raw: str, form_name: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(form_name, raw)


def _choice(options: tuple[str, ...]) -> Callable[[str, str], str]:
    """A parser accepting one of ``options`` case-insensitively and returning its canonical spelling."""
    lookup = {o.lower(): o for o in options}

    def parse(raw: str, form_name: str) -> str:
        try:
            return lookup[raw.strip().lower()]
        except KeyError:
            raise _bad(form_name, raw) from None

    return parse


def parse_str(raw: str, form_name: str) -> str:
    return raw


Bound = tuple[str, float]
"""``(">=", 0)`` or ``(">", 0)``: a lower bound; ``("<=", 1)``: an upper one."""


def _f(form_name: str, parser: Callable[[str, str], Any], *bounds: Bound) -> Any:
    """A field with its exact form key, its parser and the range the pipeline needs it in."""
    return field(metadata={"form": form_name, "parser": parser, "bounds": bounds})


def _fits(value: float, bound: Bound) -> bool:
    op, limit = bound
    if op == ">":
        return value > limit
    if op == ">=":
        return value >= limit
    return value <= limit


def check_bounds(value: float, bounds: tuple[Bound, ...], form_name: str, raw: str) -> None:
    """A 400 naming the field and its range when ``value`` falls outside ``bounds``."""
    if not all(_fits(value, b) for b in bounds):
        rule = " and ".join(f"{op} {limit:g}" for op, limit in bounds)
        raise ClientError(f"Invalid value for {form_name}: {raw.strip()} (must be {rule})")


def check_seed(value: int, form_name: str, raw: str) -> None:
    """-1 (a random seed) or 0..2**32-1; upstream's seeding fails on anything else."""
    if value != -1 and not 0 <= value <= SEED_LIMIT:
        raise ClientError(f"Invalid value for {form_name}: {raw.strip()} (must be -1 or 0..{SEED_LIMIT})")


POSITIVE: tuple[Bound, ...] = ((">", 0),)
NON_NEGATIVE: tuple[Bound, ...] = ((">=", 0),)
STEPS: tuple[Bound, ...] = ((">=", 1),)


@dataclass
class InpaintRequest:
    """Every ``/inpaint`` setting, snake_case; field metadata names the exact form key, its parser and
    its range. Unbounded on purpose: the croper origin (clamped to the image), the croper size (checked
    only when ``useCroper`` is on, the only time it is used), and ``sdStrength`` and
    ``paintByExampleGuidanceScale``, which upstream ignores, so no value of theirs can break anything and
    refusing one would only break clients upstream serves."""

    ldm_steps: int = _f("ldmSteps", parse_int, *STEPS)
    ldm_sampler: str = _f("ldmSampler", _choice(LDM_SAMPLERS))
    zits_wireframe: bool = _f("zitsWireframe", parse_bool)
    hd_strategy: str = _f("hdStrategy", _choice(HD_STRATEGIES))
    hd_strategy_crop_margin: int = _f("hdStrategyCropMargin", parse_int, *NON_NEGATIVE)
    hd_strategy_crop_triger_size: int = _f("hdStrategyCropTrigerSize", parse_int, *NON_NEGATIVE)
    hd_strategy_resize_limit: int = _f("hdStrategyResizeLimit", parse_int, *POSITIVE)
    prompt: str = _f("prompt", parse_str)
    negative_prompt: str = _f("negativePrompt", parse_str)
    use_croper: bool = _f("useCroper", parse_bool)
    croper_x: int = _f("croperX", parse_int)
    croper_y: int = _f("croperY", parse_int)
    croper_width: int = _f("croperWidth", parse_int)
    croper_height: int = _f("croperHeight", parse_int)
    sd_scale: float = _f("sdScale", parse_float, (">", 0), ("<=", 1))
    sd_mask_blur: int = _f("sdMaskBlur", parse_int, *NON_NEGATIVE)
    sd_strength: float = _f("sdStrength", parse_float)
    sd_steps: int = _f("sdSteps", parse_int, *STEPS)
    sd_guidance_scale: float = _f("sdGuidanceScale", parse_float, *NON_NEGATIVE)
    sd_sampler: str = _f("sdSampler", _choice(SD_SAMPLERS))
    sd_seed: int = _f("sdSeed", parse_int)
    sd_match_histograms: bool = _f("sdMatchHistograms", parse_bool)
    cv2_radius: int = _f("cv2Radius", parse_int, *NON_NEGATIVE)
    cv2_flag: str = _f("cv2Flag", _choice(CV2_FLAGS))
    paint_by_example_steps: int = _f("paintByExampleSteps", parse_int, *STEPS)
    paint_by_example_guidance_scale: float = _f("paintByExampleGuidanceScale", parse_float)
    paint_by_example_seed: int = _f("paintByExampleSeed", parse_int)
    paint_by_example_mask_blur: int = _f("paintByExampleMaskBlur", parse_int, *NON_NEGATIVE)
    paint_by_example_match_histograms: bool = _f("paintByExampleMatchHistograms", parse_bool)
    p2p_steps: int = _f("p2pSteps", parse_int, *STEPS)
    p2p_image_guidance_scale: float = _f("p2pImageGuidanceScale", parse_float, *NON_NEGATIVE)
    p2p_guidance_scale: float = _f("p2pGuidanceScale", parse_float, *NON_NEGATIVE)
    controlnet_conditioning_scale: float = _f("controlnet_conditioning_scale", parse_float, *NON_NEGATIVE)
    controlnet_method: str = _f("controlnet_method", parse_str)

    @classmethod
    def form_names(cls) -> list[str]:
        """The 34 form keys, in contract order."""
        return [f.metadata["form"] for f in fields(cls)]

    @classmethod
    def from_form(cls, form: Mapping[str, str], *, rng: random.Random | None = None) -> InpaintRequest:
        """Parse and validate a form; ``-1`` seeds become random ones drawn from ``rng``.

        ``rng`` defaults to a fresh, OS-seeded ``random.Random`` per request, so concurrent requests never
        share (or reseed) a global generator.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f.metadata["form"]
            raw = form.get(key)
            if raw is None:
                raise ClientError(f"Missing form field: {key}")
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", errors="replace")
            text = str(raw)
            value = f.metadata["parser"](text, key)
            if f.metadata["bounds"]:
                check_bounds(value, f.metadata["bounds"], key, text)
            values[f.name] = value
        req = cls(**values)
        req._check_cross_field()
        if req.sd_seed == -1 or req.paint_by_example_seed == -1:  # seeding a Random reads os.urandom
            req.resolve_seeds(rng or random.Random())
        return req

    def _check_cross_field(self) -> None:
        """Ranges that depend on another field, or are not a plain bound (seeds)."""
        check_seed(self.sd_seed, "sdSeed", str(self.sd_seed))
        check_seed(self.paint_by_example_seed, "paintByExampleSeed", str(self.paint_by_example_seed))
        if self.use_croper:  # an empty croper rectangle leaves nothing to inpaint
            check_bounds(self.croper_width, POSITIVE, "croperWidth", str(self.croper_width))
            check_bounds(self.croper_height, POSITIVE, "croperHeight", str(self.croper_height))

    def resolve_seeds(self, rng: random.Random) -> None:
        """Replace ``-1`` seeds by random ones in [1, 999999999], as upstream does."""
        if self.sd_seed == -1:
            self.sd_seed = rng.randint(SEED_MIN, SEED_MAX)
        if self.paint_by_example_seed == -1:
            self.paint_by_example_seed = rng.randint(SEED_MIN, SEED_MAX)


def default_form(**overrides: str) -> dict[str, str]:
    """What a fresh 1.2.5 front end sends for lama (docs/compatibility.md#inpaint-form,
    #frontend-defaults); handy for scripts and tests.

    Keyword overrides use the exact form keys (``default_form(hdStrategy="Original")``).
    """
    form = {
        "ldmSteps": "25",
        "ldmSampler": "plms",
        "zitsWireframe": "true",
        "hdStrategy": "Crop",
        "hdStrategyCropMargin": "196",
        "hdStrategyCropTrigerSize": "800",
        "hdStrategyResizeLimit": "2048",
        "prompt": "",
        "negativePrompt": "",
        "useCroper": "false",
        "croperX": "0",
        "croperY": "0",
        "croperWidth": "512",
        "croperHeight": "512",
        "sdScale": "1",
        "sdMaskBlur": "5",
        "sdStrength": "0.75",
        "sdSteps": "50",
        "sdGuidanceScale": "7.5",
        "sdSampler": "uni_pc",
        "sdSeed": "-1",
        "sdMatchHistograms": "false",
        "cv2Radius": "5",
        "cv2Flag": "INPAINT_NS",
        "paintByExampleSteps": "50",
        "paintByExampleGuidanceScale": "7.5",
        "paintByExampleSeed": "-1",
        "paintByExampleMaskBlur": "5",
        "paintByExampleMatchHistograms": "false",
        "p2pSteps": "50",
        "p2pImageGuidanceScale": "1.5",
        "p2pGuidanceScale": "7.5",
        "controlnet_conditioning_scale": "0.4",
        "controlnet_method": "control_v11p_sd15_canny",
    }
    form.update(overrides)
    return form
