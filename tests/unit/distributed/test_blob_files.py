"""Blobs over the inline limit live in content-addressed files: written before the commit, removed
after it, never left behind by a rollback or a crash, and read back exactly (task_store + blob_files)."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from lama_cleaner.plugins.distributed.journal import blob_files
from lama_cleaner.plugins.distributed.journal.task_store import (
    INLINE_BLOB_MAX,
    BlobMissing,
    TaskStore,
    default_migrations_dir,
    sha256_of,
)

BIG = os.urandom(INLINE_BLOB_MAX + 1)
BIG2 = os.urandom(200_000)
SMALL = b"\x89PNG-mask"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data" / "journal.sqlite3"


def blob_dir(path):
    return path.parent / "blobs"


def on_disk(path) -> set[str]:
    root = blob_dir(path)
    return {f.name for f in root.glob("*/*")} if root.exists() else set()


def new(store: TaskStore, files: dict[str, bytes]):
    rec, _ = store.create_task(kind="inpaint", name="cv2", queue="cpu", max_attempts=3, files=files)
    return rec


def stored(store: TaskStore, data: bytes) -> tuple[str, int]:
    row = store._db.execute("SELECT stored, length(data) FROM blobs WHERE sha256 = ?", (sha256_of(data),)).fetchone()
    return row[0], row[1]


def test_big_blobs_are_files_small_ones_stay_inline_and_both_read_back(path):
    with TaskStore(path) as store:
        a = new(store, {"image": BIG, "mask": SMALL})
        b = new(store, {"image": BIG, "mask": BIG2})  # BIG is shared: one file
        assert stored(store, BIG) == ("file", 0) and stored(store, SMALL) == ("inline", len(SMALL))
        assert on_disk(path) == {sha256_of(BIG), sha256_of(BIG2)}
        assert (blob_dir(path) / sha256_of(BIG)[:2] / sha256_of(BIG)).read_bytes() == BIG
        store.mark_processing(a.id, "n")
        # A result is not content-addressed: the same bytes as BIG2 get a file of their own, under a
        # random key of a digest's shape (no hashing on the way back, nothing shares a result).
        result = store.complete(a.id, mimetype="image/png", headers={}, body=BIG2).result_sha256
        assert result not in (sha256_of(BIG2), None) and len(result) == 64 and int(result, 16) >= 0
        assert on_disk(path) == {sha256_of(BIG), sha256_of(BIG2), result}
    with TaskStore(path) as store:  # reopened: nothing swept, everything readable
        assert on_disk(path) == {sha256_of(BIG), sha256_of(BIG2), result}
        assert store.inputs(a.id) == {"image": BIG, "mask": SMALL}
        assert store.inputs(b.id) == {"image": BIG, "mask": BIG2}
        assert store.output(a.id) == ("image/png", {}, BIG2)
        assert store.get_blob(sha256_of(BIG)) == BIG


def test_files_are_written_at_the_commit_and_rolled_back_writes_leave_none(path, monkeypatch):
    with TaskStore(path) as store:
        with pytest.raises(RuntimeError):
            with store.batch():
                rec = new(store, {"image": BIG})
                assert on_disk(path) == set()  # not written (nor hashed) while the batch goes on...
                assert store.inputs(rec.id) == {"image": BIG}  # ...though its task's inputs read back
                raise RuntimeError("boom")
        assert on_disk(path) == set()  # a rolled-back batch never writes its files
        in_transaction: list[bool] = []
        real_write = blob_files.BlobFiles.write

        def write(files, digest, data):
            in_transaction.append(store._db.in_transaction)  # True: the COMMIT has not happened yet
            real_write(files, digest, data)

        monkeypatch.setattr(blob_files.BlobFiles, "write", write)
        with store.batch():
            new(store, {"image": BIG2})
            assert in_transaction == []
        assert in_transaction == [True] and on_disk(path) == {sha256_of(BIG2)}
        with store.batch():
            kept = new(store, {"image": BIG2})
            with pytest.raises(RuntimeError):
                with store.savepoint():
                    new(store, {"image": BIG})
                    raise RuntimeError("one bad message")
        assert on_disk(path) == {sha256_of(BIG2)}
        assert store.inputs(kept.id) == {"image": BIG2}


def test_a_failed_file_write_undoes_the_task(path, monkeypatch):
    with TaskStore(path) as store:

        def disk_full(self, digest, data):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(blob_files.BlobFiles, "write", disk_full)
        with pytest.raises(OSError):
            new(store, {"image": BIG})
        assert store.list()[1] == 0 and store.blob_count() == 0 and on_disk(path) == set()


def test_prune_deletes_files_only_after_its_commit(path):
    with TaskStore(path) as store:
        old = new(store, {"image": BIG, "mask": SMALL})
        store.mark_processing(old.id, "n", now=1.0)
        store.complete(old.id, mimetype="image/png", headers={}, body=BIG2, now=2.0)
        with pytest.raises(RuntimeError):
            with store.batch():
                assert store.prune(older_than=100.0, now=200.0) == (1, 3)
                assert len(on_disk(path)) == 2  # still there until the deletion commits
                raise RuntimeError("commit never happens")
        assert store.inputs(old.id) == {"image": BIG, "mask": SMALL} and len(on_disk(path)) == 2
        assert store.prune(older_than=100.0, now=200.0) == (1, 3)
        assert on_disk(path) == set() and store.blob_count() == 0


def test_a_blob_pruned_and_resubmitted_in_one_batch_keeps_its_file(path):
    with TaskStore(path) as store:
        old = new(store, {"image": BIG})
        store.mark_processing(old.id, "n", now=1.0)
        store.complete(old.id, mimetype="image/png", headers={}, body=b"out", now=2.0)
        with store.batch():
            store.prune(older_than=100.0, now=200.0)
            again = new(store, {"image": BIG})
        assert store.inputs(again.id) == {"image": BIG}


def test_opening_the_journal_removes_orphans_and_temporary_files(path):
    with TaskStore(path) as store:
        rec = new(store, {"image": BIG})
    folder = blob_dir(path) / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    orphan = folder / ("ab" + "0" * 62)  # renamed into place, then the process died before the commit
    orphan.write_bytes(b"never committed")
    tmp = folder / f".{'ab' + '1' * 62}.123{blob_files.TMP_SUFFIX}"
    tmp.write_bytes(b"half written")
    with TaskStore(path) as store:
        assert not orphan.exists() and not tmp.exists()
        assert store.inputs(rec.id) == {"image": BIG}


def test_a_lost_file_reads_as_missing_and_the_same_bytes_restore_it(path):
    with TaskStore(path) as store:
        rec = new(store, {"image": BIG})
        store.mark_processing(rec.id, "n")
        result = store.complete(rec.id, mimetype="image/png", headers={}, body=BIG2).result_sha256
        for key in (sha256_of(BIG), result):
            (blob_dir(path) / key[:2] / key).unlink()
        with pytest.raises(BlobMissing, match="image"):
            store.inputs(rec.id)
        assert store.get_blob(sha256_of(BIG)) is None
        assert store.output(rec.id) is None  # FETCH answers "expired"
        again = new(store, {"image": BIG})
        assert store.inputs(again.id) == {"image": BIG} and store.inputs(rec.id) == {"image": BIG}
        truncated = blob_dir(path) / sha256_of(BIG)[:2] / sha256_of(BIG)
        truncated.write_bytes(BIG[:100])  # e.g. a power cut under synchronous=NORMAL
        assert store.get_blob(sha256_of(BIG)) is None


@pytest.mark.parametrize(("mode", "fsyncs"), [("NORMAL", False), ("FULL", True)])
def test_files_are_fsynced_before_the_commit_only_when_synchronous_is_full(path, monkeypatch, mode, fsyncs):
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(blob_files.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    with TaskStore(path, synchronous=mode) as store:
        new(store, {"image": BIG})
    assert bool(calls) is fsyncs
    if fsyncs:
        assert len(calls) >= 2  # the file and its folder


def test_journal_from_before_blob_files_keeps_its_inline_blobs_readable(path, tmp_path):
    old_migrations = tmp_path / "old-migrations"
    old_migrations.mkdir()
    for name in ("0001_initial.sql", "0002_result_blob_index.sql"):
        shutil.copy(default_migrations_dir() / name, old_migrations / name)
    with TaskStore(path, migrations_dir=old_migrations) as store:
        assert store.schema_version() == 2
        old = new(store, {"image": BIG, "mask": SMALL})
        assert on_disk(path) == set()
    with TaskStore(path) as store:
        assert store.applied_migrations == [
            "0003_blob_files.sql",
            "0004_task_priority.sql",
            "0005_task_owner.sql",
            "0006_task_dispatches.sql",
        ]
        assert stored(store, BIG) == ("inline", len(BIG))
        assert store.inputs(old.id) == {"image": BIG, "mask": SMALL}
        fresh = new(store, {"image": BIG2})
        assert stored(store, BIG2) == ("file", 0) and store.inputs(fresh.id) == {"image": BIG2}
    rows = sqlite3.connect(path).execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert rows == [(1,), (2,), (3,), (4,), (5,), (6,)]


def test_a_task_dispatched_in_the_batch_that_created_it_gets_its_bytes_without_a_read(path):
    with TaskStore(path) as store:
        with store.batch():
            rec = new(store, {"image": BIG, "mask": SMALL})
            assert on_disk(path) == set()  # its file is only written at the commit: nothing to read yet
            assert store.inputs(rec.id) == {"image": BIG, "mask": SMALL}
        (blob_dir(path) / sha256_of(BIG)[:2] / sha256_of(BIG)).unlink()
        with pytest.raises(BlobMissing):
            store.inputs(rec.id)  # later rounds read the journal
