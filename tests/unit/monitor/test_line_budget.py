"""The budget of routine per-task lines: the first ``lines_per_s`` of a second are written, the rest counted and
summarized once; failures and lines about no task are never budgeted; the summary comes even if no other line
follows. Through the real loguru set-up and the real standard-library bridge."""

from __future__ import annotations

import logging
import threading

from loguru import logger

from lama_cleaner.config import Config
from lama_cleaner.plugins.monitor.logs.line_budget import LineBudget
from lama_cleaner.plugins.monitor.process import MonitorProcess
from lama_cleaner.tasks import TaskEvent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_lines_of_a_second_pass_the_rest_are_summarized_at_the_next_second() -> None:
    clock, summaries = Clock(), []
    budget = LineBudget(3, lambda n, span: summaries.append((n, round(span, 1))), clock=clock, timers=False)
    assert [budget.allow() for _ in range(5)] == [True, True, True, False, False]
    assert summaries == []
    clock.now += 1.0
    assert budget.allow(), "a new second, a new budget"
    assert summaries == [(2, 1.0)], "the summary of the second before, once"
    assert budget.left_out_total == 2
    clock.now += 5.0
    assert budget.allow() and summaries == [(2, 1.0)], "a second that left nothing out says nothing"


def test_zero_writes_every_line_and_close_summarizes_the_current_second() -> None:
    unlimited = LineBudget(0, lambda n, span: None, timers=False)
    assert all(unlimited.allow() for _ in range(10_000))
    clock, summaries = Clock(), []
    budget = LineBudget(1, lambda n, span: summaries.append(n), clock=clock, timers=False)
    budget.allow(), budget.allow(), budget.allow()
    budget.close()
    assert summaries == [2]


def test_a_burst_followed_by_silence_is_still_summarized() -> None:
    done = threading.Event()
    summaries: list[int] = []
    budget = LineBudget(2, lambda n, span: (summaries.append(n), done.set()))
    for _ in range(7):
        budget.allow()
    assert done.wait(10), "the window's timer wrote the summary without another line"
    assert summaries == [5]


def test_routine_task_lines_are_budgeted_in_a_process_and_failures_are_not() -> None:
    config = Config()
    config.monitor.task_lines_per_s = 4
    process = MonitorProcess()
    process.startup(config, "scheduler")
    lines: list[tuple[str, str, str | None]] = []
    sink = logger.add(
        lambda m: lines.append((m.record["level"].name, m.record["message"], m.record["extra"].get("task_id"))),
        level="INFO",
    )
    try:
        node_log = logging.getLogger("lama_cleaner.plugins.distributed.node.agent")
        for i in range(10):  # a node's routine lines, through the standard-library bridge
            node_log.info("task t%d completed in 0.001 s", i, extra={"task_id": f"t{i}", "queue": "cpu"})
        node_log.info("joining queue cpu")  # about no task: never budgeted
        process.observe(TaskEvent("x", "queued", name="cv2", queue="cpu", at=1.0))  # budget spent: left out
        process.observe(TaskEvent("x", "failed", name="cv2", queue="cpu", error="boom", attempts=1, at=2.0))
    finally:
        process.shutdown()  # closes the budget (its summary is written while the sinks are there), then the sinks
    assert sink not in logger._core.handlers  # noqa: SLF001 - ours went with the others
    messages = [m for _, m, _ in lines]
    assert [t for _, m, t in lines if "completed in" in m] == ["t0", "t1", "t2", "t3"]
    assert "joining queue cpu" in messages
    assert ("WARNING", "task failed after 1 attempt(s): boom", "x") in lines
    assert not any(m.startswith("task accepted") for m in messages)
    summary = [m for m in messages if "routine task lines" in m]
    assert len(summary) == 1 and summary[0].startswith("7 routine task lines"), summary


def test_the_default_process_writes_every_line_of_a_normal_rate() -> None:
    process = MonitorProcess()
    process.startup(Config(), "scheduler")
    seen: list[str] = []
    logger.add(lambda m: seen.append(m.record["message"]), level="INFO")
    try:
        for i in range(30):
            process.observe(TaskEvent(f"n{i}", "queued", name="cv2", queue="cpu", at=1.0))
    finally:
        process.shutdown()  # removes every sink, ours too
    assert len([m for m in seen if m.startswith("task accepted")]) == 30
    assert not any("routine task lines" in m for m in seen)
