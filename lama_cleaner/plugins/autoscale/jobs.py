"""The periodic evaluation: one APScheduler job that runs :meth:`Autoscaler.safe_tick` every ``interval_s``.

APScheduler 3's ``BackgroundScheduler`` owns one thread. The job never overlaps itself
(``max_instances=1``) and a run that was missed while the previous one was slow is coalesced into
one (a late evaluation that sees fresh statistics is as good as two). The first evaluation runs at
once, so a backlog that exists when the scheduler starts is answered without waiting an interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

JOB_ID = "autoscale-evaluate"


class EvaluationJob:
    """Runs ``evaluate`` every ``interval_s`` seconds on APScheduler's thread until :meth:`stop`."""

    def __init__(self, evaluate: Callable[[], Any], interval_s: float) -> None:
        self.evaluate = evaluate
        self.interval_s = interval_s
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        # APScheduler logs every run at INFO ("Running job ...", "executed successfully"): one pair per
        # interval drowns the server's log. Its warnings (a skipped or failed run) still show, and an
        # operator who set the logger's level keeps it.
        executor_log = logging.getLogger("apscheduler.executors.default")
        if executor_log.level == logging.NOTSET:
            executor_log.setLevel(logging.WARNING)
        scheduler = BackgroundScheduler(daemon=True, timezone=UTC)
        scheduler.add_job(
            self.evaluate,
            "interval",
            seconds=self.interval_s,
            id=JOB_ID,
            name="autoscale: evaluate the scaling policy",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self._scheduler = scheduler
        log.info("autoscale: evaluating every %g s", self.interval_s)

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def stop(self) -> None:
        """Stop the job; an evaluation in progress is waited for (it holds the autoscaler's lock)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=True)
