"""lama-cleaner 1.2.5's own cv2 code, run beside ours on the same machine (issue 11, item 5).

1.2.5 is never installed: its wheel is downloaded with pip (``--no-deps``) once, unpacked into the user's
cache, and its model code imported from there by a child interpreter (``scripts/gen_fidelity_fixtures.py
--child``), whose ``lama_cleaner`` is 1.2.5's. Why live rather than only recorded hashes: OpenCV picks
its SIMD code paths by CPU, and some of them round differently, so 1.2.5 itself gives other bytes for
the same case on another CPU (seen: ``resize-1000-edges-png`` on an AMD EPYC with AVX-512 against the
machine that recorded the fixture). What must hold is "the same pixels as 1.2.5 on this machine".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lama_cleaner.frontend import FrontendError, download_wheel

from .server_process import REPO_ROOT

VERSION = "1.2.5"
GENERATOR = REPO_ROOT / "scripts" / "gen_fidelity_fixtures.py"


def cache_dir() -> Path:
    """``~/.cache/lama-cleaner/upstream/1.2.5``: holds the unpacked ``lama_cleaner/`` of the wheel."""
    return Path.home() / ".cache" / "lama-cleaner" / "upstream" / VERSION


def is_source(folder: Path) -> bool:
    return (folder / "lama_cleaner" / "model" / "opencv2.py").is_file()


def upstream_source() -> tuple[Path | None, str]:
    """(folder holding 1.2.5's ``lama_cleaner/`` package, "") or (None, why it could not be had)."""
    target = cache_dir()
    if is_source(target):
        return target, ""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".upstream-", dir=target.parent) as tmp:
        try:
            wheel = download_wheel(Path(tmp), VERSION)
        except FrontendError as exc:
            return None, str(exc)
        staging = Path(tmp) / "src"
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.startswith("lama_cleaner/") and "/app/build/" not in n]
            zf.extractall(staging, members)
        if not is_source(staging):
            return None, f"{wheel.name} holds no lama_cleaner/model/opencv2.py"
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # whole or not at all: a half-unpacked tree is never left behind
    return target, ""


def upstream_hashes(source: Path) -> dict[str, str]:
    """Case name -> digest of 1.2.5's result for every ``fidelity_cases.CASES`` case, computed now."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(REPO_ROOT)])}
    child = subprocess.run(
        [sys.executable, str(GENERATOR), "--child"], env=env, cwd="/", capture_output=True, text=True, timeout=600
    )
    if child.returncode != 0:
        raise RuntimeError(f"1.2.5's cv2 code failed (exit {child.returncode}):\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])
