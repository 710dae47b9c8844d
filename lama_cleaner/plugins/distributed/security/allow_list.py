"""The scheduler's allow-list: the public keys in a folder of ``*.key`` files, read again whenever the
folder changes, so that adding or removing a file admits or shuts out a peer without a restart.

Checking costs a ``stat`` of the folder and its files at most once per ``min_interval_s`` for a key
that is allowed (the scheduler loop asks at every message, so a revoked key is noticed within that
time) and at most once per ``deny_interval_s`` before a key is refused (the ZAP thread asks at every
connection attempt: a key just added is admitted at once, and a flood of unknown keys cannot turn
into a flood of folder reads). A file that cannot be read is
logged and skipped; the keys that can be read still count.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from .key_files import PUBLIC_SUFFIX, KeyFileError, load_public

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]


class AllowList:
    """Thread-safe set of allowed Z85 public keys: the ``.key`` files of ``directory`` plus ``always``
    (keys allowed whatever the folder holds: the scheduler's own, which its local nodes use)."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        always: Iterable[bytes] = (),
        *,
        min_interval_s: float = 0.5,
        deny_interval_s: float = 0.05,
    ) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.always = frozenset(always)
        self.min_interval_s = min_interval_s
        self.deny_interval_s = deny_interval_s
        self._lock = threading.Lock()
        self._keys: frozenset[bytes] = self.always
        self._names: dict[bytes, str] = {}
        self._signature: Signature | None = None
        self._checked_at = float("-inf")
        self.reloads = 0
        """How many times the folder was read (tests and logs)."""
        self.refresh(force=True)

    def _scan(self) -> Signature:
        if self.directory is None:
            return ()
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except OSError as exc:
            log.error("cannot read the allow-list folder %s: %s", self.directory, exc)
            return ()
        out = []
        for entry in entries:
            if entry.name.endswith(PUBLIC_SUFFIX) and entry.is_file():
                info = entry.stat()
                out.append((entry.name, info.st_mtime_ns, info.st_size))
        return tuple(out)

    def refresh(self, *, force: bool = False, max_age_s: float | None = None) -> bool:
        """Read the folder again if it changed since the last look (done at most every ``max_age_s``,
        default ``min_interval_s``); True when the keys changed."""
        now = time.monotonic()
        with self._lock:
            age = self.min_interval_s if max_age_s is None else max_age_s
            if not force and now - self._checked_at < age:
                return False
            self._checked_at = now
            signature = self._scan()
            if signature == self._signature:
                return False
            self._signature = signature
            keys: dict[bytes, str] = {}
            assert self.directory is not None or not signature
            for name, _, _ in signature:
                try:
                    keys[load_public(self.directory / name)] = name  # type: ignore[operator]
                except KeyFileError as exc:
                    log.error("allow-list: skipping %s", exc)
            changed = frozenset(keys) | self.always != self._keys
            self._keys = frozenset(keys) | self.always
            self._names = keys
            self.reloads += 1
        if changed:
            log.info("allow-list %s: %d key(s) allowed", self.directory, len(self._keys))
        return changed

    def allows(self, public_key: bytes) -> bool:
        """Whether ``public_key`` (Z85) may connect now; looks at the folder again if it is due."""
        self.refresh()
        if public_key in self._keys:
            return True
        self.refresh(max_age_s=self.deny_interval_s)  # maybe added a moment ago
        return public_key in self._keys

    def name_of(self, public_key: bytes) -> str | None:
        """The file that allows ``public_key`` (for log lines), if any."""
        return self._names.get(public_key)

    def __len__(self) -> int:
        return len(self._keys)
