"""Evaluate the alert rules on a timer and hand the results to the sinks, each on its own thread.

The timer is an APScheduler ``BackgroundScheduler`` interval job with one instance at a time (a slow
evaluation skips a beat instead of piling up), coalesced missed runs, and no misfire cut-off (a run that
starts late still runs: APScheduler's default drops runs more than a second late). Start the engine in the
process that owns the scheduler's figures, after any fork: a scheduler thread started before a fork does
not exist in the child.

Sinks are fed through a bounded queue each; a sink that falls far behind loses its oldest deliveries (with
an error in the log) rather than growing memory without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from ..metrics.signals import Signal
from .sinks import AlertSink, Delivery
from .state import AlertTracker

log = logging.getLogger(__name__)

QUEUE_SIZE = 64
JOB_ID = "lama-cleaner-alert-rules"
_STOP = object()


class SinkRunner:
    """One sink's thread: takes deliveries from a queue and calls ``sink.deliver``; errors are logged."""

    def __init__(self, sink: AlertSink) -> None:
        self.sink = sink
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name=f"lama-cleaner-alert-sink-{sink.name}", daemon=True)
        self._pending = 0  # submitted and not yet delivered (or dropped)
        self._settled = threading.Condition()

    def start(self) -> None:
        self._thread.start()

    def submit(self, delivery: Delivery) -> None:
        if not delivery.notifications and not self.sink.every_evaluation:
            return
        with self._settled:
            self._pending += 1
        while True:
            try:
                self._queue.put_nowait(delivery)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    continue
                log.error("alert sink %s is %d deliveries behind; dropped the oldest", self.sink.name, QUEUE_SIZE)
                self._settle()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Delivery)
            try:
                self.sink.deliver(item)
            except Exception:  # noqa: BLE001 - one sink's failure must not stop it for good
                log.exception("alert sink %s failed", self.sink.name)
            self._settle()

    def _settle(self) -> None:
        with self._settled:
            self._pending -= 1
            self._settled.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once everything submitted so far has been delivered (for shutdown and tests)."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float) -> None:
        """Deliver what is queued (up to ``timeout``), then stop; a sink still busy is told to give up."""
        if not self._thread.is_alive():
            self.sink.close()
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.sink.close()
        self._thread.join(1.0)


class AlertEngine:
    """Rules (in a tracker) + a source of signals + sinks, evaluated every ``interval_s``."""

    def __init__(
        self,
        tracker: AlertTracker,
        signals: Callable[[], Iterable[Signal]],
        sinks: Sequence[AlertSink],
        interval_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tracker = tracker
        self.signals = signals
        self.interval_s = interval_s
        self.clock = clock
        self.runners = [SinkRunner(s) for s in sinks]
        self._lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None

    def evaluate_once(self) -> Delivery:
        """One evaluation: read the signals, advance the alerts, queue the delivery for every sink."""
        with self._lock:
            signals = list(self.signals())
            now = self.clock()
            notes = self.tracker.evaluate(signals, now)
            delivery = Delivery(tuple(notes), tuple(self.tracker.active()), now)
        for runner in self.runners:
            runner.submit(delivery)
        return delivery

    def _job(self) -> None:
        try:
            self.evaluate_once()
        except Exception:  # noqa: BLE001 - logged here with our words; the next run tries again
            log.exception("alert evaluation failed")

    def start(self) -> AlertEngine:
        for runner in self.runners:
            runner.start()
        executors = logging.getLogger("apscheduler.executors.default")
        if executors.level == logging.NOTSET:  # "Running job ..." every interval is noise in our log
            executors.setLevel(logging.WARNING)
        scheduler = BackgroundScheduler(daemon=True, timezone=UTC)
        scheduler.add_job(
            self._job,
            "interval",
            seconds=self.interval_s,
            id=JOB_ID,
            next_run_time=datetime.now(UTC),  # first evaluation now, not one interval after start
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()
        self._scheduler = scheduler
        return self

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """True once every sink has delivered everything queued so far."""
        deadline = time.monotonic() + timeout
        return all(r.wait_idle(max(0.0, deadline - time.monotonic())) for r in self.runners)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the timer (waiting for a running evaluation), then let each sink finish what is queued."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        for runner in self.runners:
            runner.stop(timeout)
