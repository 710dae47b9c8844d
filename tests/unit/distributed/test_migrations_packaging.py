"""The journal's migrations ship inside the wheel and are found there once installed.

The scheduler cannot open its journal without them, so a non-editable ``pip install .`` that left
them out (they live in the top-level ``migrations/`` folder, outside the ``lama_cleaner`` package)
made distributed mode unusable. These tests build a real wheel from a copy of the tree, install it
into a folder of its own and open a real journal through the installed copy's locator.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from lama_cleaner.plugins.distributed.journal import task_store
from tests.support.server_process import REPO_ROOT

BUILD_INPUTS = ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "lama_cleaner", "migrations")
SQL_FILES = sorted(p.name for p in (REPO_ROOT / "migrations").glob("*.sql"))


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=240, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built (without network or build isolation) from a copy of the build inputs, so the
    build writes nothing into the working tree."""
    root = tmp_path_factory.mktemp("wheel-build")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in BUILD_INPUTS:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), ".", cwd=src)
    (built,) = (root / "dist").glob("lama_cleaner-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_carries_every_migration(wheel: Path) -> None:
    assert SQL_FILES, "the repository has no migrations/*.sql to check"
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [sql for sql in SQL_FILES if f"lama_cleaner/migrations/{sql}" not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    packaged = zipfile.ZipFile(wheel).read(f"lama_cleaner/migrations/{SQL_FILES[0]}")
    assert packaged == (REPO_ROOT / "migrations" / SQL_FILES[0]).read_bytes()


@pytest.mark.slow
def test_an_installed_wheel_opens_its_journal_with_the_packaged_migrations(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(site), str(wheel), cwd=tmp_path)
    probe = textwrap.dedent(
        """
        import sys
        from lama_cleaner.plugins.distributed.journal import task_store
        found = task_store.default_migrations_dir()
        store = task_store.TaskStore(sys.argv[1])
        print(task_store.__file__)
        print(found)
        print(store.schema_version())
        store.close()
        """
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    # cwd outside the repository, and the repository not on the path: only the installed copy counts.
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "journal" / "tasks.db")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    module, found, version = result.stdout.split()
    assert Path(module).is_relative_to(site), "the probe imported the repository, not the installed wheel"
    assert Path(found) == site / "lama_cleaner" / "migrations"
    assert int(version) == int(SQL_FILES[-1][:4])


def test_the_environment_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(task_store.MIGRATIONS_ENV, str(tmp_path))
    assert task_store.default_migrations_dir() == tmp_path


def test_a_source_checkout_falls_back_to_the_top_level_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Here (PYTHONPATH = the repository) ``lama_cleaner.migrations`` does not exist as a folder."""
    monkeypatch.delenv(task_store.MIGRATIONS_ENV, raising=False)
    assert task_store.default_migrations_dir() == REPO_ROOT / "migrations"
    assert sorted(p.name for p in task_store.default_migrations_dir().glob("*.sql")) == SQL_FILES
