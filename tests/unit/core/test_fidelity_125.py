"""cv2 results at 1920x1080 are pixel-identical to lama-cleaner 1.2.5's, with hdStrategy Resize and Crop.

The hashes were recorded by running 1.2.5's own model code on the same inputs
(``scripts/gen_fidelity_fixtures.py``); a mismatch after a numpy or OpenCV upgrade means regenerating
them with that script, one anywhere else means our HD strategy arithmetic drifted from 1.2.5's.
"""

from __future__ import annotations

import json
import random

import pytest

from lama_cleaner.config import Config
from lama_cleaner.inpaint_request import InpaintRequest, default_form
from lama_cleaner.models.opencv import OpenCV2
from tests.support.fidelity_cases import CASES, FIXTURE, digest
from tests.support.server_process import REPO_ROOT

RECORDED = json.loads((REPO_ROOT / FIXTURE).read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cv2_result_is_pixel_identical_to_125(case):
    rgb, mask = case.inputs()
    req = InpaintRequest.from_form(default_form(**case.form()), rng=random.Random(0))
    result = OpenCV2("cpu", Config())(rgb, mask[:, :, None], req)
    assert result.shape == (case.height, case.width, 3)
    assert digest(result) == RECORDED["sha256"][case.name], (
        f"{case.name}: differs from 1.2.5 (fixtures made with numpy {RECORDED['numpy']}, OpenCV {RECORDED['opencv']})"
    )
