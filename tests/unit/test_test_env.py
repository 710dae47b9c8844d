"""The locked test environment: the lock is complete and consistent, and the sync script reads it right."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _load_sync():
    spec = importlib.util.spec_from_file_location("sync_test_env", ROOT / "scripts" / "sync_test_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load_sync()


def test_lock_pins_every_requirement_of_the_project_and_its_test_extras():
    pins = sync.read_lock()
    unmet = []
    for spec in metadata.requires("lama-cleaner") or []:
        req = Requirement(spec)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *sync.EXTRAS)):
            continue
        version = pins.get(sync.canonical(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req} -> {version}")
    assert not unmet, f"requirements/test.lock does not satisfy setup.py (run scripts/lock_test_env.sh): {unmet}"


def test_this_environment_is_the_locked_one():
    """What scripts/test.sh guarantees: nothing missing, nothing extra, every version as pinned."""
    assert sync.differences(sync.read_lock(), sync.installed()) == []


def test_lock_is_sorted_exact_pins_without_local_torch_label():
    lines = [line for line in sync.LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines)
    assert lines == sorted(lines, key=str.lower)
    assert "torch==2.13.0" in lines  # the CPU build on local disk; any other spec downloads a CUDA build


def test_differences_name_missing_extra_and_wrong_versions():
    pins = {"pytest": "9.1.1", "torch": "2.13.0", "six": "1.17.0"}
    have = {"pytest": "9.2.0", "torch": "2.13.0+cpu", "tomli": "2.5.0", "lama-cleaner": "2.0.0.dev0"}
    assert sync.differences(pins, have) == ["pytest 9.2.0 instead of 9.1.1", "missing six==1.17.0", "extra tomli 2.5.0"]


@pytest.mark.parametrize(
    ("pinned", "actual", "same"),
    [
        ("2.13.0", "2.13.0+cpu", True),
        ("2.13.0", "2.13.0", True),
        ("2.13.0+cpu", "2.13.0", False),
        ("1.0", "1.1", False),
    ],
)
def test_a_pin_without_local_label_matches_any_build(pinned, actual, same):
    assert sync.same_version(pinned, actual) is same


def test_read_lock_refuses_a_line_without_an_exact_pin(tmp_path):
    bad = tmp_path / "test.lock"
    bad.write_text("# header\nflask>=2\n")
    with pytest.raises(SystemExit, match="expected name==version"):
        sync.read_lock(bad)
