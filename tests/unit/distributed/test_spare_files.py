"""Spare files for the journal's large blobs (journal/spare_files.py, BlobFiles.keep_spares): a large write fills
a spare made ahead (the same inode, cut to size), small ones and a run without spares make new files, the spares
are made again after each take, and none is left behind by a stop or a crash. Real files and the real thread;
the full disk is provoked for real, with RLIMIT_FSIZE in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lama_cleaner.plugins.distributed.journal.blob_files import SPARE_DIR, BlobFiles
from lama_cleaner.plugins.distributed.journal.spare_files import DEFAULT_SIZE, MAX_SIZE, MIN_BLOB, MiB, SpareFiles
from tests.support.server_process import REPO_ROOT
from tests.support.waiting import wait_for

DIGEST = "ab" + "0" * 62
OTHER = "cd" + "1" * 62


def spares_on_disk(root: Path) -> dict[int, Path]:
    """The spare files in ``root``'s spare folder, by inode."""
    folder = root / SPARE_DIR
    return {p.stat().st_ino: p for p in folder.iterdir()} if folder.is_dir() else {}


def ready_files(root: Path, count: int) -> BlobFiles:
    files = BlobFiles(root)
    files.keep_spares(count)
    assert files.spares is not None
    wait_for(lambda: files.spares.ready() == count, 10, f"{count} spares to be made")
    return files


def test_a_large_blob_fills_a_spare_and_the_spare_is_made_again(tmp_path: Path) -> None:
    files = ready_files(tmp_path, 2)
    try:
        before = spares_on_disk(tmp_path)
        assert len(before) == 2 and all(p.stat().st_size == DEFAULT_SIZE for p in before.values())
        data = os.urandom(3 * MiB + 123)  # smaller than the spare: cut to its size
        files.write(DIGEST, data)
        written = files.path(DIGEST)
        assert written.read_bytes() == data
        assert written.stat().st_ino in before, "the blob went into a spare, not a new file"
        wait_for(lambda: files.spares.ready() == 2, 10, "the taken spare to be made again")
        assert files.read(DIGEST, len(data)) == data
    finally:
        files.close()


def test_a_blob_larger_than_the_spare_grows_it_and_later_spares_are_made_that_large(tmp_path: Path) -> None:
    files = ready_files(tmp_path, 1)
    try:
        data = os.urandom(DEFAULT_SIZE + MiB + 5)
        files.write(DIGEST, data)
        assert files.path(DIGEST).read_bytes() == data
        assert files.spares.size == DEFAULT_SIZE + 2 * MiB, "the next spares fit the largest blob, in whole MiB"
        wait_for(
            lambda: [p.stat().st_size for p in spares_on_disk(tmp_path).values()] == [DEFAULT_SIZE + 2 * MiB],
            10,
            "a spare of the new size",
        )
        files.spares.take(10 * MAX_SIZE)
        assert files.spares.size == MAX_SIZE, "never larger than MAX_SIZE"
    finally:
        files.close()


def test_small_blobs_and_a_burst_beyond_the_spares_make_new_files(tmp_path: Path) -> None:
    files = ready_files(tmp_path, 1)
    try:
        small = os.urandom(MIN_BLOB - 1)
        files.write(DIGEST, small)
        assert files.spares.ready() == 1, "a small blob takes no spare"
        assert files.path(DIGEST).stat().st_ino not in spares_on_disk(tmp_path)
        files.spares.stop()  # nothing is made any more: the next large writes find none ready
        big, bigger = os.urandom(MIN_BLOB), os.urandom(2 * MIN_BLOB)
        files.write(OTHER, big)
        files.write(DIGEST, bigger)
        assert files.path(OTHER).read_bytes() == big and files.path(DIGEST).read_bytes() == bigger
    finally:
        files.close()


def test_close_removes_the_spares_and_a_restart_removes_a_crashed_runs(tmp_path: Path) -> None:
    files = ready_files(tmp_path, 3)
    files.close()
    files.close()  # twice is fine
    assert spares_on_disk(tmp_path) == {}

    # A scheduler killed with spares on disk: the next one starts by removing them.
    folder = tmp_path / SPARE_DIR
    left = [folder / f"spare-999999-{i}.tmp" for i in range(2)]
    for path in left:
        path.write_bytes(b"\0" * 10)
    files = ready_files(tmp_path, 1)
    try:
        assert not any(path.exists() for path in left)
        assert len(spares_on_disk(tmp_path)) == 1
    finally:
        files.close()


def test_zero_spares_starts_nothing(tmp_path: Path) -> None:
    files = BlobFiles(tmp_path)
    files.keep_spares(0)
    assert files.spares is None and not (tmp_path / SPARE_DIR).exists()
    spare = SpareFiles(tmp_path / "x", count=0).start()
    assert spare.take(MiB) is None
    spare.stop()


def test_when_no_spare_can_be_made_writes_go_to_new_files_and_it_says_so_once(tmp_path: Path) -> None:
    """A disk that cannot hold a spare (here: a file size limit below it, so posix_fallocate fails for real)
    costs nothing but the saving: every blob is still written, to a new file."""
    script = textwrap.dedent(
        f"""
        import logging, os, resource, signal, sys, time
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, 2 * 1024 * 1024))
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        from lama_cleaner.plugins.distributed.journal.blob_files import BlobFiles
        files = BlobFiles(Path({str(tmp_path)!r}))
        files.keep_spares(2)
        deadline = time.monotonic() + 10
        while not files.spares._warned and time.monotonic() < deadline:
            time.sleep(0.01)  # poll for the maker's first failure
        data = os.urandom(300 * 1024)
        for i in range(3):
            files.write(f"{{i:02d}}" + "0" * 62, data)
            assert files.path(f"{{i:02d}}" + "0" * 62).read_bytes() == data
        print("ready", files.spares.ready())
        files.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ready 0"
    warnings = [line for line in result.stderr.splitlines() if "cannot make a spare blob file" in line]
    assert len(warnings) == 1, result.stderr
    assert "blobs go to new files" in warnings[0]
    assert spares_on_disk(tmp_path) == {}
