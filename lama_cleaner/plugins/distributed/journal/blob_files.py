"""Blob files next to the journal: ``<data_dir>/blobs/<2 hex>/<key>`` (an input's sha256, a result's random key).

Why files: a 1 MB image stored as an SQLite BLOB is written twice (into the WAL, then into the
database by the checkpoint) and copied through the page cache on every read; measured on the
2-core box, an insert + commit of 1 MiB cost 3.3 ms and a read 0.5 ms, against 0.3 ms and 0.03 ms
for writing (and renaming) or reading a file. SQLite's own measurements make the same cut:
blobs larger than about 100 KB are faster as separate files ("Internal Versus External BLOBs").
Small blobs (masks, tiny test images) stay inline, where a row is cheaper than a file.

Rules that keep files and journal consistent (:class:`~.task_store.TaskStore` applies them):

- a file is written to a temporary name and renamed into place **before** the transaction that
  references it commits, so a committed row never points to a half-written file;
- with ``synchronous = FULL``/``EXTRA`` the file and its directory are fsynced before that commit
  too, so a power cut cannot keep the row and lose the file; with ``NORMAL`` (which only promises
  to survive a process crash) no fsync is paid, and a file lost to a power cut reads as missing
  (its size no longer matches) instead of as wrong bytes;
- a file is deleted only **after** the commit that deleted its row; files whose row never
  committed (a rolled-back transaction, a crash between rename and commit) and stray temporary
  files are removed when the journal is opened (:meth:`BlobFiles.sweep`).

A scheduler also keeps spare files (:meth:`BlobFiles.keep_spares`, :mod:`.spare_files`): a large
blob overwrites a file whose page-cache pages exist already instead of making a new one, which on
a VM whose host reclaims freed memory was most of what writing a result before its DONE cost.

Not thread-safe; the store's thread owns it, and one scheduler owns a data directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .spare_files import MIN_BLOB, SpareFiles

TMP_SUFFIX = ".tmp"
SPARE_DIR = ".spare"


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


class BlobFiles:
    """The blob directory of one journal; ``fsync`` makes every write durable before it returns."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._dirs: set[str] = set()  # fan-out folders known to exist (saves a mkdir per write)
        self.spares: SpareFiles | None = None

    def keep_spares(self, count: int) -> None:
        """Keep ``count`` spare files ready for large blobs (0: none); for the process that writes."""
        if count > 0 and self.spares is None:
            self.spares = SpareFiles(self.root / SPARE_DIR, count=count, suffix=TMP_SUFFIX).start()

    def close(self) -> None:
        """Stop making spares and remove those left (safe twice, and without spares)."""
        spares, self.spares = self.spares, None
        if spares is not None:
            spares.stop()

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def write(self, digest: str, data: bytes) -> None:
        """Store ``data`` as ``digest`` atomically: readers see the whole file or none."""
        folder = self.root / digest[:2]
        if digest[:2] not in self._dirs:
            created = not folder.is_dir()
            folder.mkdir(parents=True, exist_ok=True)
            if created and self.fsync:
                _fsync_dir(self.root)
            self._dirs.add(digest[:2])
        final = folder / digest
        spare = self.spares.take(len(data)) if self.spares is not None and len(data) >= MIN_BLOB else None
        if spare is not None:  # overwritten in place, then cut to size: its pages exist already
            tmp, flags = spare, os.O_WRONLY
        else:
            tmp, flags = folder / f".{digest}.{os.getpid()}{TMP_SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(tmp, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if spare is not None:
                os.ftruncate(fd, len(data))
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)
        if self.fsync:
            _fsync_dir(folder)

    def read(self, digest: str, size: int) -> bytes | None:
        """The blob's bytes, or None when its file is missing or not ``size`` bytes long."""
        try:
            with open(self.path(digest), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return data if len(data) == size else None

    def unlink(self, digest: str) -> None:
        _unlink(self.path(digest))

    def files(self) -> Iterator[tuple[str, Path]]:
        """Every entry of the fan-out folders as (name, path), temporary files included."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir() and len(folder.name) == 2:
                for entry in folder.iterdir():
                    yield entry.name, entry

    def sweep(self, keep: set[str]) -> int:
        """Delete files whose digest is not in ``keep`` and leftover temporary files; returns the count.
        Only for start-up, before anything is written: an in-flight write would look like litter."""
        removed = 0
        for name, path in list(self.files()):
            if name.endswith(TMP_SUFFIX) or (_is_digest(name) and name not in keep):
                _unlink(path)
                removed += 1
        return removed


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (the directory entry), where the OS lets a directory be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
