"""How many routine per-task lines a process writes a second, and a summary of those it did not.

A routine line is one a task writes when all goes well: accepted, started and completed, in the scheduler's
path and on a node. At the rates Lama Cleaner usually sees (a few to a few dozen images a second) every one
is written. A flood of tiny tasks (a thousand a second) would make them the monitor's main cost (about
15-20 us of loguru per line, in the scheduler's process, several per task) and bury everything else in the
log; so past ``lines_per_s`` in a second the rest of that second's routine lines are counted instead of
written, and one summary line says how many were left out. Failures, retries, re-queues, cancellations and
everything that is not about one task are always written; the metrics and the journal
(``GET /api/v1/tasks/{id}``) keep every task whatever the log holds. ``lines_per_s = 0`` writes them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

WINDOW_S = 1.0


class LineBudget:
    """Thread-safe; :meth:`allow` is the only call on the hot path (a lock and two comparisons)."""

    def __init__(
        self,
        lines_per_s: int,
        summarize: Callable[[int, float], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        timers: bool = True,
    ) -> None:
        """``summarize(left_out, window_s)`` writes the summary line (never itself budgeted). With ``timers``
        a window that left lines out is summarized when it ends even if no further line comes."""
        self.lines_per_s = lines_per_s
        self.left_out_total = 0
        self._summarize = summarize
        self._clock = clock
        self._timers = timers
        self._lock = threading.Lock()
        self._window_start = clock()
        self._written = 0
        self._left_out = 0
        self._timer: threading.Timer | None = None

    def allow(self) -> bool:
        """May one more routine line be written now? A ``False`` is counted for the window's summary."""
        if self.lines_per_s <= 0:
            return True
        now = self._clock()
        with self._lock:
            if now - self._window_start >= WINDOW_S:
                self._roll(now)
            if self._written < self.lines_per_s:
                self._written += 1
                return True
            self._left_out += 1
            self.left_out_total += 1
            if self._left_out == 1 and self._timers:
                self._timer = threading.Timer(WINDOW_S - (now - self._window_start) + 0.01, self.summarize_due)
                self._timer.daemon = True
                self._timer.start()
            return False

    def summarize_due(self) -> None:
        """Write the summary of a window that has ended (the timer's call; also safe to call any time)."""
        now = self._clock()
        with self._lock:
            if now - self._window_start >= WINDOW_S:
                self._roll(now)

    def close(self) -> None:
        """Summarize what the current window left out, now (at shutdown), and stop its timer."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._roll(self._clock())

    def _roll(self, now: float) -> None:
        left_out, span = self._left_out, now - self._window_start
        self._window_start, self._written, self._left_out = now, 0, 0
        self._timer = None
        if left_out:
            try:
                self._summarize(left_out, span)
            except Exception:  # noqa: BLE001 - a summary that cannot be written must not break the caller
                pass
