#!/usr/bin/env python3
"""Record what lama-cleaner 1.2.5's own cv2 code returns for ``tests/support/fidelity_cases.py``.

Usage (1.2.5 is never installed: its wheel is only unpacked, and its model code imported from there):

    UP=$(mktemp -d)  # a throwaway folder
    pip download lama-cleaner==1.2.5 --no-deps -d "$UP"
    python -m zipfile -e "$UP"/lama_cleaner-1.2.5-py3-none-any.whl "$UP"/src
    python scripts/gen_fidelity_fixtures.py --upstream "$UP"/src

It runs itself again in a child interpreter whose ``lama_cleaner`` is 1.2.5's (with this repository's
``tests`` package behind it for the inputs), calls ``OpenCV2(device)(image, mask, config)`` exactly as
1.2.5's ``/inpaint`` does (then ``astype(np.uint8)``, as its server does) and writes the hashes to
``tests/fixtures/cv2_fidelity_1.2.5.json``. Same numpy and OpenCV as the tests, so a mismatch is ours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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
    if not args.upstream or not (Path(args.upstream) / "lama_cleaner" / "model" / "opencv2.py").is_file():
        parser.error("--upstream must name the folder that holds 1.2.5's lama_cleaner/ package")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(args.upstream).resolve()), str(ROOT)])}
    child = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"], env=env, cwd="/", capture_output=True, text=True
    )
    if child.returncode != 0:
        sys.stderr.write(child.stderr)
        return child.returncode
    hashes = json.loads(child.stdout.strip().splitlines()[-1])
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
