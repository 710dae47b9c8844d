"""Shared memory between a node and a scheduler on the same host: uploads and results by reference.

Why: a node on the scheduler's host (the web server's local nodes above all) otherwise receives every
upload over TCP, passes it to its inference child over a Pipe, and sends the result back the same two
ways. For a 1920x1080 PNG that is four copies of 3-4 MB through the kernel and a dozen wake-ups, most
of what distributed mode added to such a request (benchmarks/README.md, ``bench_added_latency.py``).
With a region both sides map, the scheduler writes the upload where the inference child reads it,
and the child writes its result where the scheduler reads it: one memory copy each way, and the
messages stay small.

How: the node makes an anonymous file (``memfd_create``, so nothing is left behind when every
process that holds it is gone, SIGKILL included), writes a magic number and a random token at its
start and offers ``/proc/<pid>/fd/<fd>`` and the token in its HELLO (protocol minor 4). A scheduler
that can open that path and finds the token there is on the same host and may read the node's
memory; it says so in WELCOME (``shared_memory: true``), and from then on the TASKs it sends that
node may carry their files by reference. Anything else (another host, another user, a container
without the node's ``/proc``, a path that is not a memfd of the named process) falls back to bytes on
the wire, which is always correct.

Layout: one header page, then one *slot* per task the node may hold (its pipeline depth), each an
*in* area (the task's files, written by the scheduler) and an *out* area (the result, written by the
inference child). The scheduler assigns a slot when it dispatches and frees it when it handles the
task's outcome, and a node lists the slots of the tasks it still holds when it says HELLO again, so
one slot never serves two live tasks. References are ``[offset, length]`` relative to their area,
checked against the area's bounds by whoever reads them.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import stat
from collections.abc import Mapping
from typing import Any

MAGIC = b"LAMA-SHM\x01\x00\x00\x00\x00\x00\x00\x00"
"""The region's first 16 bytes (format version 1); the token follows."""
TOKEN_BYTES = 16
HEADER_BYTES = mmap.PAGESIZE
MEMFD_NAME = "lama-cleaner-shared"
"""The memfd's name: ``/proc/<pid>/fd/<fd>`` of such a file reads ``/memfd:lama-cleaner-shared (deleted)``."""
MAX_SLOTS = 16
MAX_AREA_BYTES = 1024 * 1024 * 1024
_PROC_FD = re.compile(r"/proc/(\d+)/fd/(\d+)")


class SharedMemoryRefused(Exception):
    """A region that cannot be used (the reason is the message); the peers then send bytes."""


def supported() -> bool:
    """Whether this platform can make a region (Linux: ``memfd_create`` and ``/proc``)."""
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _round_to_page(n: int) -> int:
    return -(-n // mmap.PAGESIZE) * mmap.PAGESIZE


class SharedRegion:
    """One node's region, as mapped by the node, its inference child or the scheduler."""

    def __init__(self, mm: mmap.mmap, fd: int, slots: int, area_bytes: int, token: bytes, path: str) -> None:
        self._mm = mm
        self._fd = fd
        self.slots = slots
        self.area_bytes = area_bytes
        self.token = token
        self.path = path

    # ------------------------------------------------------------------ making and attaching
    @classmethod
    def create(cls, slots: int, area_bytes: int) -> SharedRegion:
        """The node's side: a new region of ``slots`` slots with two areas of ``area_bytes`` each.
        Its pages are only allocated when first written, and stay allocated (reused) after that.
        Raises OSError (or SharedMemoryRefused for bad sizes) where it cannot be made."""
        if not 1 <= slots <= MAX_SLOTS:
            raise SharedMemoryRefused(f"slots must be 1..{MAX_SLOTS}, not {slots}")
        area_bytes = _round_to_page(area_bytes)
        if not mmap.PAGESIZE <= area_bytes <= MAX_AREA_BYTES:
            raise SharedMemoryRefused(f"area size {area_bytes} is out of range")
        size = HEADER_BYTES + slots * 2 * area_bytes
        fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        token = secrets.token_bytes(TOKEN_BYTES)
        mm[: len(MAGIC) + TOKEN_BYTES] = MAGIC + token
        return cls(mm, fd, slots, area_bytes, token, f"/proc/{os.getpid()}/fd/{fd}")

    def offer(self) -> dict[str, Any]:
        """What the node says about its region in HELLO (``shared_memory``)."""
        return {"path": self.path, "token": self.token.hex(), "slots": self.slots, "area_bytes": self.area_bytes}

    @classmethod
    def attach(cls, offer: Any, pid: Any) -> SharedRegion:
        """The scheduler's (and the inference child's) side: map the region a node process ``pid``
        offered. Raises :class:`SharedMemoryRefused` with the reason when it cannot be used here.

        Only a memfd of that very process is opened (the path is ``/proc/<pid>/fd/<n>`` and links to
        a memfd of our name), non-blocking, and only if its size is the one the offer implies: a peer
        cannot make the scheduler map, let alone write into, any other file."""
        if not isinstance(offer, dict):
            raise SharedMemoryRefused("no region offered")
        path, token_hex = offer.get("path"), offer.get("token")
        slots, area_bytes = offer.get("slots"), offer.get("area_bytes")
        if not (isinstance(path, str) and isinstance(token_hex, str)):
            raise SharedMemoryRefused("malformed offer")
        if not (_int(slots) and _int(area_bytes) and 1 <= slots <= MAX_SLOTS):
            raise SharedMemoryRefused("malformed offer")
        if area_bytes % mmap.PAGESIZE or not mmap.PAGESIZE <= area_bytes <= MAX_AREA_BYTES:
            raise SharedMemoryRefused("area size out of range")
        match = _PROC_FD.fullmatch(path)
        if match is None or not _int(pid) or int(match.group(1)) != pid:
            raise SharedMemoryRefused("the path is not a descriptor of the offering process")
        try:
            token = bytes.fromhex(token_hex)
        except ValueError:
            raise SharedMemoryRefused("malformed token") from None
        if len(token) != TOKEN_BYTES:
            raise SharedMemoryRefused("malformed token")
        try:
            target = os.readlink(path)
        except OSError as exc:
            raise SharedMemoryRefused(f"not on this host, or not readable here ({exc.strerror})") from None
        if not target.startswith(f"/memfd:{MEMFD_NAME}"):
            raise SharedMemoryRefused("the path is not a shared region")
        size = HEADER_BYTES + slots * 2 * area_bytes
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SharedMemoryRefused(f"cannot open it ({exc.strerror})") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                raise SharedMemoryRefused("its size is not the offered one")
            mm = mmap.mmap(fd, size)
        except OSError as exc:
            os.close(fd)
            raise SharedMemoryRefused(f"cannot map it ({exc.strerror})") from None
        except BaseException:
            os.close(fd)
            raise
        if mm[: len(MAGIC) + TOKEN_BYTES] != MAGIC + token:
            mm.close()
            os.close(fd)
            raise SharedMemoryRefused("its token is not the offered one")
        return cls(mm, fd, slots, area_bytes, token, path)

    # ------------------------------------------------------------------ areas
    def has_slot(self, slot: Any) -> bool:
        """Whether ``slot`` (as read from a message) names one of this region's slots."""
        return _int(slot) and 0 <= slot < self.slots

    def _area(self, slot: int, out: bool) -> int:
        if not self.has_slot(slot):
            raise ValueError(f"no slot {slot!r}")
        return HEADER_BYTES + (2 * slot + (1 if out else 0)) * self.area_bytes

    def _span(self, slot: int, out: bool, ref: Any) -> tuple[int, int]:
        """Absolute (start, end) of ``ref`` = ``[offset, length]`` inside an area; ValueError if it
        is malformed or reaches outside the area."""
        if not (isinstance(ref, (list, tuple)) and len(ref) == 2 and _int(ref[0]) and _int(ref[1])):
            raise ValueError(f"malformed reference {ref!r}")
        offset, length = ref
        if offset < 0 or length < 0 or offset + length > self.area_bytes:
            raise ValueError(f"reference {ref!r} is outside the area")
        base = self._area(slot, out)
        return base + offset, base + offset + length

    def write_inputs(self, slot: int, files: Mapping[str, bytes]) -> dict[str, list[int]] | None:
        """Write a task's files into the slot's in area; their references, or None when they do not
        fit together (they then travel as bytes)."""
        total = sum(len(data) for data in files.values())
        if total > self.area_bytes:
            return None
        base = self._area(slot, False)
        refs: dict[str, list[int]] = {}
        offset = 0
        for name, data in files.items():
            self._mm[base + offset : base + offset + len(data)] = data
            refs[name] = [offset, len(data)]
            offset += len(data)
        return refs

    def read_inputs(self, slot: int, refs: Any) -> dict[str, bytes]:
        """The files a TASK named by reference (``{name: [offset, length]}``); ValueError if malformed."""
        if not isinstance(refs, dict):
            raise ValueError("shared blobs must be an object")
        files: dict[str, bytes] = {}
        for name, ref in refs.items():
            start, end = self._span(slot, False, ref)
            files[str(name)] = self._mm[start:end]
        return files

    def write_output(self, slot: int, data: bytes) -> int | None:
        """Write a result into the slot's out area; its length, or None when it does not fit."""
        if len(data) > self.area_bytes:
            return None
        base = self._area(slot, True)
        self._mm[base : base + len(data)] = data
        return len(data)

    def read_output(self, slot: int, length: Any) -> bytes:
        """The result the inference child wrote into ``slot`` (``length`` bytes); ValueError if out of bounds."""
        start, end = self._span(slot, True, [0, length])
        return self._mm[start:end]

    def close(self) -> None:
        """Unmap and close (idempotent). The memory itself lives until every process has let go."""
        try:
            self._mm.close()
        except (BufferError, ValueError):  # pragma: no cover - no views are ever exported
            pass
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
