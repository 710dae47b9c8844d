#!/usr/bin/env python3
"""Record what lama-cleaner 1.2.5's own cv2 code returns for ``tests/support/fidelity_cases.py``.

Usage (1.2.5 is never installed: its wheel is only unpacked, and its model code imported from there):

    python scripts/gen_fidelity_fixtures.py                 # fetches 1.2.5 (tests/support/upstream_125.py)
    python scripts/gen_fidelity_fixtures.py --upstream DIR  # DIR holds an unpacked 1.2.5 lama_cleaner/

It runs itself again in a child interpreter whose ``lama_cleaner`` is 1.2.5's (with this repository's
``tests`` package behind it for the inputs), calls ``OpenCV2(device)(image, mask, config)`` exactly as
1.2.5's ``/inpaint`` does (then ``astype(np.uint8)``, as its server does) and writes the hashes to
``tests/fixtures/cv2_fidelity_1.2.5.json``. The test compares with 1.2.5 run live on its own machine
when it can fetch 1.2.5 (OpenCV's CPU-specific code paths make some hashes machine-dependent), and
with this file only when it cannot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_upstream() -> dict[str, str]:
    import numpy as np
    from lama_cleaner.model.opencv2 import OpenCV2
    from lama_cleaner.schema import Config

    import lama_cleaner
    from tests.support.fidelity_cases import CASES, digest

    if Path(lama_cleaner.__file__).resolve().is_relative_to(ROOT):
        raise SystemExit("the child imported this repository's lama_cleaner, not 1.2.5's")
    model = OpenCV2("cpu")
    out = {}
    for case in CASES:
        rgb, mask = case.inputs()
        config = Config(
            ldm_steps=25,
            hd_strategy=case.hd_strategy,
            hd_strategy_crop_margin=case.crop_margin,
            hd_strategy_crop_trigger_size=case.crop_trigger,
            hd_strategy_resize_limit=case.resize_limit,
            cv2_flag=case.cv2_flag,
            cv2_radius=case.cv2_radius,
        )
        with np.errstate(all="ignore"):
            result = model(rgb.copy(), mask.copy(), config).astype(np.uint8)
        out[case.name] = digest(result)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", help="folder holding 1.2.5's unpacked lama_cleaner package")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_run_upstream()))
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.support.upstream_125 import is_source, upstream_hashes, upstream_source

    if args.upstream:
        source = Path(args.upstream)
        if not is_source(source):
            parser.error("--upstream must name the folder that holds 1.2.5's lama_cleaner/ package")
    else:
        found, why = upstream_source()
        if found is None:
            parser.error(f"cannot get lama-cleaner 1.2.5 ({why}); pass --upstream")
        source = found
    try:
        hashes = upstream_hashes(source.resolve())
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    import cv2
    import numpy

    payload = {
        "upstream": "lama-cleaner 1.2.5 (model/base.py, model/opencv2.py, helper.py)",
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "sha256": hashes,
    }
    target = ROOT / "tests" / "fixtures" / "cv2_fidelity_1.2.5.json"
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {target.relative_to(ROOT)} ({len(hashes)} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
