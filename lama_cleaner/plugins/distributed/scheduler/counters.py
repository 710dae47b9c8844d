"""The scheduler's event counters: one lock, because ``stats()`` and the handle read them from other threads.

The loop thread is the only writer (and CURVE's ZAP thread, which counts refused peers); readers get
copies. ``handle_view`` adds the names the public handle promises (``docs/protocol.md`` §10) on top
of the scheduler's own, older names.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("lama_cleaner.plugins.distributed.scheduler.service")

COUNTER_NAMES = (
    "submitted",
    "dispatched",
    "completed",
    "failed",
    "cancelled",
    "retries",
    "duplicates",
    "stale_messages",
    "garbage_frames",
    "requeued_on_node_loss",
    "handed_back",
    "rejected_overloaded",
    "rejected_bad_request",
    "handler_errors",
    "journal_errors",
    "undelivered",
    "pruned_tasks",
    "pruned_blobs",
    "reattached",
    "done_sent",
    "heartbeats_missed",
    "nodes_lost",
    "rejected_peers",
    "foreign_reports",
    "shared_dispatches",
)
"""Counters that exist (at 0) from the start, so ``stats()`` always lists them."""


class Counters:
    """Named counts, safe to read from any thread; also the rate-limited log of dropped garbage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._garbage_logged = 0.0
        self._foreign_logged = 0.0

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def garbage(self, why: str) -> None:
        """A malformed or misdirected message was dropped: counted, and logged at most once a second
        (a flood of junk must not flood the log)."""
        self.count("garbage_frames")
        now = time.time()
        if now - self._garbage_logged > 1.0:
            self._garbage_logged = now
            log.warning("dropped a malformed message: %s", why)

    def foreign(self, why: str) -> None:
        """A node spoke for another node or about a task attempt that was not handed to it: dropped
        without touching the task, counted (``foreign_reports``) and logged (rate-limited)."""
        self.count("foreign_reports")
        now = time.time()
        if now - self._foreign_logged > 1.0:
            self._foreign_logged = now
            log.warning("refused a report from the wrong node: %s", why)

    def values(self) -> dict[str, int]:
        """A copy of every counter under its own name."""
        with self._lock:
            return dict(self._values)

    def handle_view(self) -> dict[str, int]:
        """The counters, plus the names the handle promises (docs/protocol.md §10)."""
        c = self.values()
        c["retried"] = c["retries"]
        c["requeued"] = c["requeued_on_node_loss"] + c["handed_back"]
        c["duplicates_discarded"] = c["duplicates"]
        c["rejected_messages"] = c["garbage_frames"] + c["rejected_bad_request"]
        return c
