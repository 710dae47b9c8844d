"""Install the example plugin (``tests/support/example_plugin``) as a real package, the way a user would.

``pip install --no-deps --no-build-isolation --no-index --target DIR`` with this interpreter's pip:
offline, and the test environment stays untouched. A process sees the package (and its entry point in
the ``lama_cleaner`` group, so it loads without ``--plugins``) once ``DIR`` is on its ``PYTHONPATH``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.server_process import REPO_ROOT

SOURCE = REPO_ROOT / "tests" / "support" / "example_plugin"


def install_example_plugin(target: Path, scratch: Path) -> Path:
    """Build and install the package into ``target`` (a copy is built in ``scratch``); returns ``target``."""
    source = scratch / "example_plugin"
    # Build from a copy: pip builds local projects in place and would leave build/ in the repo.
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True,
        timeout=300,
    )  # fmt: skip
    assert list(target.glob("lama_cleaner_example_plugin-*.dist-info/entry_points.txt")), "entry point missing"
    return target
