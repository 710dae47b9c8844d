"""Files made ahead of the journal's blob writes, so that a write fills page-cache pages that already exist.

Why: writing a blob to a new file makes the kernel take a fresh page-cache page for every 4 KiB of it. On a
virtual machine whose host takes freed guest memory back (free page reporting, a balloon; the 2-core box's
Firecracker VM does so within 30 s), each such page is faulted in through the host again: measured there,
10.7 ms to write 4 MiB to a new file against 0.7 ms to overwrite a file made this way. A result's file is
written before its DONE, so that cost was on every request's path (most of what distributed mode added to
a 1080p PNG ``/inpaint``; see ``benchmarks/README.md``).

A thread keeps ``count`` files ready in ``<blob dir>/.spare/``. Each is allocated with ``posix_fallocate``
(blocks reserved as unwritten extents: nothing is written to the disk) and read once, which puts its pages
in the page cache. :meth:`BlobFiles.write <.blob_files.BlobFiles.write>` takes one, overwrites it, cuts it
to the blob's size and renames it into place, and the thread makes the next. With none ready (a burst), a
write makes a new file as before, so a spare is only ever a saving. Spares grow to the largest blob seen
(up to :data:`MAX_SIZE`); they hold ``count`` x that of disk and of reclaimable page cache, are temporary
files, removed on :meth:`SpareFiles.stop` and, after a crash, when the next scheduler starts.
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_SIZE = 4 * MiB
"""A 1080p PNG result or upload (3-4 MB) fits; spares grow to the largest blob seen."""
MAX_SIZE = 32 * MiB
MIN_BLOB = 256 * 1024
"""Smaller blobs are written to new files: a few pages cost little, and spares are kept for the large ones."""
REFILL_DELAY_S = 0.05
"""How long after a take the next spare is made: making one faults its pages in, which slowed the write that
had just taken a spare more than twice over (3.4 against 1.5 ms a 3.5 MB blob) when the two overlapped."""
RETRY_S = 30.0
"""After a spare could not be made (a full disk): how long before trying again."""
_READ_CHUNK = MiB
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class SpareFiles:
    """Ready-made files in ``folder``, taken by one thread (the journal's) and made by one of their own."""

    def __init__(self, folder: str | os.PathLike[str], *, count: int = 4, suffix: str = ".tmp") -> None:
        self.folder = Path(folder)
        self.count = max(0, int(count))
        self.suffix = suffix
        self.size = DEFAULT_SIZE
        """The size of the next spare: grows (by :meth:`take`) to the largest blob seen, up to MAX_SIZE."""
        self._ready: collections.deque[Path] = collections.deque()
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._names = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> SpareFiles:
        """Remove what a crashed scheduler left in the folder, then start making spares."""
        if self.count == 0 or self._thread is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_all()
        self._thread = threading.Thread(target=self._run, name="lama-cleaner-spare-files", daemon=True)
        self._thread.start()
        return self

    def take(self, size: int) -> Path | None:
        """A ready spare, now the caller's to fill and rename, or None when none is ready."""
        wanted = min(MAX_SIZE, -(-size // MiB) * MiB)
        if wanted > self.size:
            self.size = wanted  # one int assignment: the maker reads it whole
        try:
            path = self._ready.popleft()
        except IndexError:
            path = None
        self._wanted.set()
        return path

    def ready(self) -> int:
        return len(self._ready)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop making spares and remove those not taken."""
        self._stopped.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._ready.clear()
        self._remove_all()

    # ------------------------------------------------------------------ the maker's thread
    def _run(self) -> None:
        buffer = bytearray(_READ_CHUNK)
        while not self._stopped.is_set():
            if len(self._ready) >= self.count:
                if self._wanted.wait(1.0):
                    self._wanted.clear()
                    self._stopped.wait(REFILL_DELAY_S)  # let the write that took one finish first
                continue
            try:
                path = self._make(self.size, buffer)
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("cannot make a spare blob file in %s (%s); blobs go to new files", self.folder, exc)
                self._stopped.wait(RETRY_S)
                continue
            if self._stopped.is_set():
                _unlink(path)
                return
            self._ready.append(path)

    def _make(self, size: int, buffer: bytearray) -> Path:
        path = self.folder / f"spare-{os.getpid()}-{next(self._names)}{self.suffix}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _reserve(fd, size)
            with open(fd, "rb", buffering=0, closefd=False) as raw:
                while raw.readinto(buffer):  # pages into the page cache, zero-filled, no disk I/O
                    pass
        except BaseException:
            os.close(fd)
            _unlink(path)
            raise
        os.close(fd)
        return path

    def _remove_all(self) -> None:
        try:
            entries = list(self.folder.iterdir())
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.endswith(self.suffix):
                _unlink(entry)


def _reserve(fd: int, size: int) -> None:
    """Blocks for ``size`` bytes, unwritten (reads give zeros); a sparse file where that is not supported."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                raise  # ENOSPC above all: no spare rather than a file the disk cannot hold
    os.ftruncate(fd, size)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
