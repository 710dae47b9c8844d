"""A text stream for loguru that may write some lines a little later, together.

Loguru writes and flushes a stream sink once per line. For the task path, three lines or more per task in
the scheduler's process, that is a system call per line, and each one lets go of the GIL: the scheduler's
loop takes it, and the observer's thread must wait to get it back, twice per line. Lines marked *deferrable*
(the task path's INFO lines carry ``extra[DEFER]``) are kept here instead and written by the next line that
is not deferrable or, at the latest, ``interval_s`` later by a small flusher thread: in one system call per
batch. Every other line (warnings, errors, anything not from the task path) is written and flushed at once,
after what is kept, so the order of lines never changes. A process killed outright loses at most the last
``interval_s`` of task-path lines; the journal keeps the tasks themselves.
"""

from __future__ import annotations

import threading
from typing import Any, TextIO

DEFER = "_defer"
"""The ``extra`` key that marks a record's line as deferrable (underscore: the formats never print it)."""
INTERVAL_S = 0.05


class DeferredStream:
    """Wraps ``target`` (standard error); loguru calls :meth:`write` then :meth:`flush` for each line."""

    def __init__(self, target: TextIO, interval_s: float = INTERVAL_S) -> None:
        self.target = target
        self.interval_s = interval_s
        self._kept: list[str] = []
        self._lock = threading.Lock()
        self._defer_flush = False
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="lama-cleaner-log-flush", daemon=True)
        self._flusher.start()

    def write(self, message: Any) -> None:
        record = getattr(message, "record", None)  # loguru's message: a str that knows its record
        with self._lock:
            self._kept.append(message)
            self._defer_flush = record is not None and bool(record["extra"].get(DEFER))

    def flush(self) -> None:
        if self._defer_flush:
            return  # the next plain line, or the flusher, writes it
        self._write_kept()

    def close(self) -> None:
        """Write what is kept and stop the flusher (the target stays open: it is standard error)."""
        self._stop.set()
        self._write_kept()

    def isatty(self) -> bool:
        return bool(getattr(self.target, "isatty", lambda: False)())

    def _write_kept(self) -> None:
        with self._lock:
            if not self._kept:
                return
            text = "".join(self._kept)
            self._kept.clear()
            self._defer_flush = False
            try:
                self.target.write(text)
                self.target.flush()
            except (OSError, ValueError):  # a closed or broken standard error: nothing left to tell
                pass

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._kept:
                self._write_kept()
