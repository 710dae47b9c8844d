"""Bring the running virtual environment to exactly the locked test set (``requirements/test.lock``).

``scripts/test.sh`` runs this inside ``.venv``. A venv that already matches is left alone (a few
milliseconds); otherwise every locked package is installed at its pinned version, anything not in the
lock is uninstalled (a package someone installed by hand must not decide whether the suite passes),
the project itself is installed editable without dependencies (if it is not already), and the result is
checked again.

The lock is the whole environment, resolved once by ``scripts/lock_test_env.sh``: installing it with
``--no-deps`` means pip resolves nothing here, so the machine, the day and the index cannot change the
outcome. ``pip check`` then proves the lock still satisfies ``setup.py``; when a dependency was added
without re-locking, this stops with the command that fixes it.

Standard library only: it must run before anything is installed.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "test.lock"
PROJECT = "lama-cleaner"
EXTRAS = ("test", "torch", "bench")
"""The project's extras the test environment holds (``pip install -e .[test,torch,bench]``)."""
KEEP = {PROJECT}
"""Installed distributions that are not in the lock and stay: the project itself (installed editable)."""
STAMP = Path(sys.prefix) / ".lama-cleaner-setup.sha256"
"""Hash of the ``setup.py`` the editable install's metadata was made from (its requirements may change)."""


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Flask_SocketIO`` and ``flask-socketio`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``{canonical name: version}`` from ``name==version`` lines; comments and blanks skipped."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise SystemExit(f"{path}:{number}: expected name==version, got {raw!r}")
        pins[canonical(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    """``{canonical name: version}`` of every distribution this interpreter sees."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonical(name)] = dist.version
    return found


def same_version(pinned: str, actual: str) -> bool:
    """``2.13.0`` accepts ``2.13.0+cpu``: a pin without a local label matches any build of that release."""
    return actual == pinned or ("+" not in pinned and actual.split("+", 1)[0] == pinned)


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """Human-readable lines, one per package that is missing, extra or at another version."""
    lines = []
    for name, version in sorted(pins.items()):
        if name not in have:
            lines.append(f"missing {name}=={version}")
        elif not same_version(version, have[name]):
            lines.append(f"{name} {have[name]} instead of {version}")
    lines += [f"extra {name} {have[name]}" for name in sorted(set(have) - set(pins) - KEEP)]
    if PROJECT not in have:
        lines.append(f"missing {PROJECT} (editable)")
    return lines


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def setup_hash() -> str:
    return hashlib.sha256((ROOT / "setup.py").read_bytes()).hexdigest()


def install_project() -> None:
    """Editable, without dependencies; again whenever ``setup.py`` changed since the last time."""
    stamp = STAMP.read_text().strip() if STAMP.exists() else ""
    if PROJECT in installed() and stamp == setup_hash():
        return
    pip("install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    STAMP.write_text(setup_hash() + "\n")


def sync() -> int:
    pins = read_lock()
    diff = differences(pins, installed())
    if not diff:
        install_project()
        return 0
    print(f"sync_test_env: bringing the venv to {LOCK.relative_to(ROOT)} ({len(diff)} differences):", flush=True)
    for line in diff[:20]:
        print(f"  {line}", flush=True)
    if len(diff) > 20:
        print(f"  ... and {len(diff) - 20} more", flush=True)
    pip("install", "--quiet", "--no-deps", "-r", str(LOCK))
    extra = sorted(set(installed()) - set(pins) - KEEP)
    if extra:
        pip("uninstall", "--quiet", "--yes", *extra)
    install_project()
    left = differences(pins, installed())
    if left:
        print("sync_test_env: the venv still differs from the lock:", *left, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def unmet_requirements() -> list[str]:
    """What ``setup.py`` asks for (with the test extras) or a locked package needs, and the venv lacks.

    ``pip check`` covers every installed package's own requirements but not the extras of ours, so the
    project's requirements are checked here with pip's own vendored ``packaging``.
    """
    from pip._vendor.packaging.requirements import Requirement

    have = installed()
    unmet = []
    for spec in metadata.requires(PROJECT) or []:
        req = Requirement(spec)
        if req.marker and not any(req.marker.evaluate({"extra": extra}) for extra in ("", *EXTRAS)):
            continue
        version = have.get(canonical(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{PROJECT} requires {req}, found {version or 'nothing'}")
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        unmet += [line for line in check.stdout.splitlines() if line.strip()]
    return unmet


def main() -> int:
    status = sync()
    if status:
        return status
    unmet = unmet_requirements()
    if unmet:
        print(
            "sync_test_env: requirements/test.lock no longer satisfies setup.py:",
            *unmet,
            sep="\n  ",
            file=sys.stderr,
        )
        print(
            "Re-lock on purpose: bash scripts/lock_test_env.sh, then commit requirements/test.lock on its own.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
