"""Where the web front end comes from, and the ``install-frontend`` command that fetches it.

This project ships no upstream front-end code. The compiled lama-cleaner 1.2.5 React build is
inside the PyPI wheel (``lama_cleaner/app/build/``), so ``install-frontend`` downloads that wheel
with pip (``--no-deps``, never installing it) and extracts only the build tree into the user's
cache. Without a build the server shows a small page of ours that explains this command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FRONTEND_VERSION = "1.2.5"
BUILD_DIR_ENV = "LAMA_CLEANER_BUILD_DIR"
WHEEL_PREFIX = "lama_cleaner/app/build/"
SKIPPED_NAMES = {".DS_Store"}
FALLBACK_DIR = Path(__file__).parent / "server" / "static"
"""Our own explanatory page, served at ``/`` when no build is installed."""


class FrontendError(RuntimeError):
    """Installing the front end failed; the message is shown to the operator as one line."""


def default_cache_dir(version: str = FRONTEND_VERSION) -> Path:
    """``~/.cache/lama-cleaner/frontend/<version>``.

    Deliberately not ``$XDG_CACHE_HOME``: ``--model-dir`` rewrites that variable for model weights,
    and the front end must stay where ``install-frontend`` put it.
    """
    return Path.home() / ".cache" / "lama-cleaner" / "frontend" / version


def build_dir() -> Path | None:
    """The installed build to serve, or None when there is none (the fallback page is served).

    ``LAMA_CLEANER_BUILD_DIR`` wins when set, as upstream; it must then hold an ``index.html``.
    """
    override = os.environ.get(BUILD_DIR_ENV)
    candidate = Path(override).expanduser() if override else default_cache_dir()
    return candidate if (candidate / "index.html").is_file() else None


def download_wheel(dest: Path, version: str = FRONTEND_VERSION) -> Path:
    """``pip download lama-cleaner==<version> --no-deps`` into ``dest``; returns the wheel path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"lama-cleaner=={version}",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "--dest",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob(f"lama_cleaner-{version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise FrontendError(
            f"pip could not download lama-cleaner=={version}: {detail[-1] if detail else 'no wheel found'}"
        )
    return wheels[0]


def extract_build(wheel: Path, target: Path) -> int:
    """Extract ``lama_cleaner/app/build/**`` from ``wheel`` into ``target`` atomically.

    The tree is written to a sibling temporary folder first and renamed into place, so a failed or
    interrupted install never leaves a half-written build that ``/`` would serve. Returns the number
    of files written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".frontend-", dir=target.parent))
    count = 0
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(WHEEL_PREFIX):
                    continue
                rel = Path(info.filename[len(WHEEL_PREFIX) :])
                if rel.name in SKIPPED_NAMES or ".." in rel.parts or rel.is_absolute():
                    continue
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                count += 1
        if not (staging / "index.html").is_file():
            raise FrontendError(f"{wheel.name} holds no {WHEEL_PREFIX}index.html")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except zipfile.BadZipFile as exc:
        raise FrontendError(f"{wheel} is not a valid wheel: {exc}") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return count


def install_frontend(
    target: Path | None = None, *, wheel: Path | None = None, force: bool = False, version: str = FRONTEND_VERSION
) -> Path:
    """Make sure the front-end build exists at ``target`` (default: the user cache) and return it."""
    target = target or default_cache_dir(version)
    if not force and (target / "index.html").is_file():
        return target
    if wheel is not None:
        extract_build(wheel, target)
        return target
    with tempfile.TemporaryDirectory(prefix="lama-cleaner-wheel-") as tmp:
        extract_build(download_wheel(Path(tmp), version), target)
    return target


def main(argv: list[str] | None = None) -> int:
    """``lama-cleaner install-frontend``: fetch the 1.2.5 build into the cache."""
    parser = argparse.ArgumentParser(
        prog="lama-cleaner install-frontend",
        description="Download the lama-cleaner 1.2.5 wheel (pip download --no-deps, never installed) "
        "and extract its compiled web front end into the user cache.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help=f"Target folder (default: ${BUILD_DIR_ENV} or ~/.cache/lama-cleaner/frontend/<version>).",
    )
    parser.add_argument("--wheel", type=Path, default=None, help="Use this local wheel file instead of downloading.")
    parser.add_argument("--force", action="store_true", help="Reinstall even if a build is already there.")
    args = parser.parse_args(argv)
    dest = args.dest
    if dest is None and os.environ.get(BUILD_DIR_ENV):
        dest = Path(os.environ[BUILD_DIR_ENV]).expanduser()
    try:
        path = install_frontend(dest, wheel=args.wheel, force=args.force)
    except FrontendError as exc:
        print(f"lama-cleaner install-frontend: {exc}", file=sys.stderr)
        return 1
    print(f"lama-cleaner {FRONTEND_VERSION} front end ready in {path}")
    return 0
