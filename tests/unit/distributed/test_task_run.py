"""``producer/task_run.py`` (one blocking request's SUBMIT, wait and result) against a stub client,
and ``translate.run_output`` (what the HTTP edge answers for its outcome).

The stub keeps the real :class:`ResultSlots` and plays the client's I/O thread from the test: it opens
the slot at ACCEPTED like the client does, and the test delivers a DONE, a terminal EVENT, a
reconnect or a close when it likes. The real client and scheduler are exercised by
``tests/integration/distributed/test_producer.py``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lama_cleaner.errors import NotFound, Overloaded, TaskCancelled, TaskFailed, TaskTimeout
from lama_cleaner.plugins.distributed.producer.client import SchedulerUnavailable
from lama_cleaner.plugins.distributed.producer.result_slots import ResultSlot, ResultSlots
from lama_cleaner.plugins.distributed.producer.task_run import TaskOutcome, run_task
from lama_cleaner.plugins.distributed.producer.translate import run_output
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.waiting import wait_for

HEADER = {"task": {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": "k"}}
ACCEPTED = p.Message(p.ACCEPTED, {"task": {"id": "t1", "status": "queued"}})


def _done(status: str = "completed") -> p.Message:
    if status == "completed":
        header = {"task_id": "t1", "status": status, "mimetype": "image/png", "headers": {}, "blobs": ["body"]}
        return p.Message(p.DONE, header, [b"DONE-BODY"])
    return p.Message(p.DONE, {"task_id": "t1", "status": status, "error": "boom", "error_status": 503})


OUTPUT = p.Message(p.OUTPUT, {"mimetype": "image/png", "headers": {}, "blobs": ["body"]}, [b"FETCHED"])


def _info(status: str) -> p.Message:
    return p.Message(p.INFO, {"task": {"id": "t1", "status": status}})


class StubClient:
    """What ``run_task`` uses of ``SchedulerClient``: ``request`` answers from ``replies`` (a reply, an
    exception to raise, or a callable of the header), and records every request."""

    retry_after = 7

    def __init__(self, replies: dict[str, Any] | None = None) -> None:
        self.replies: dict[str, Any] = {p.SUBMIT: ACCEPTED, p.FETCH: OUTPUT, p.GET: _info("processing")}
        self.replies.update(replies or {})
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.slots = ResultSlots(ttl_s=60)
        self.closed = False
        self.released: list[str] = []
        self.looked_up: list[str] = []

    # -- the client's side
    def request(self, command: str, header: dict[str, Any], blobs: Any = None, *, done_event: Any = None) -> p.Message:
        self.sent.append((command, header))
        answer = self.replies[command]
        if callable(answer) and not isinstance(answer, p.Message):
            answer = answer(header)
        if isinstance(answer, BaseException):
            raise answer
        if command == p.SUBMIT and answer.command == p.ACCEPTED and done_event is not None:
            self.slots.open(answer.header["task"]["id"], done_event, time.monotonic())
        return answer

    def result_slot(self, task_id: str) -> ResultSlot | None:
        self.looked_up.append(task_id)
        return self.slots.get(task_id)

    def release_result(self, task_id: str) -> None:
        self.released.append(task_id)
        self.slots.release(task_id)

    # -- what the test does as the I/O thread
    def commands(self) -> list[str]:
        return [command for command, _ in self.sent]


def _in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


# ---------------------------------------------------------------------- run_task
def test_a_done_is_the_outcome_with_nothing_but_the_submit_sent():
    client = StubClient()
    thread, box = _in_background(lambda: run_task(client, HEADER, [b"i"], timeout=10, recheck_s=60))
    wait_for(lambda: client.slots.get("t1") is not None, 5, "the SUBMIT", interval=0.005)
    client.slots.deliver(_done())
    thread.join(5)
    outcome = box["value"]
    assert outcome.reply is ACCEPTED and outcome.final.command == p.DONE and outcome.task_id == "t1"
    assert client.commands() == [p.SUBMIT] and client.released == ["t1"] and len(client.slots) == 0


def test_the_submit_asks_for_the_result_without_changing_the_callers_header():
    client = StubClient()
    client.replies[p.SUBMIT] = p.Message(p.REJECTED, {"status": 503, "code": "overloaded", "message": "full"})
    outcome = run_task(client, HEADER, [b"i"], timeout=10)
    ((command, sent),) = client.sent
    assert command == p.SUBMIT and sent == {**HEADER, "want_result": True} and "want_result" not in HEADER
    assert outcome.final is None and outcome.task_id is None and client.released == []  # refused: no slot


def test_a_terminal_event_without_a_done_fetches_the_result():
    client = StubClient()
    thread, box = _in_background(lambda: run_task(client, HEADER, [], timeout=10, recheck_s=60))
    wait_for(lambda: client.slots.get("t1") is not None, 5, "the SUBMIT", interval=0.005)
    client.slots.mark_terminal("t1", "completed")
    thread.join(5)
    assert box["value"].final is OUTPUT and client.commands() == [p.SUBMIT, p.FETCH]
    assert client.sent[1][1] == {"task_id": "t1"}


def test_silence_is_checked_with_get_and_a_finished_task_is_fetched():
    client = StubClient()
    answers = iter([_info("queued"), _info("processing"), _info("completed")])
    client.replies[p.GET] = lambda header: next(answers)
    outcome = run_task(client, HEADER, [], timeout=10, recheck_s=0.01)
    assert outcome.final is OUTPUT and client.commands() == [p.SUBMIT, p.GET, p.GET, p.GET, p.FETCH]


def test_a_reconnect_wake_up_asks_get_at_once():
    client = StubClient()
    client.replies[p.GET] = _info("cancelled")
    started = time.monotonic()
    thread, box = _in_background(lambda: run_task(client, HEADER, [], timeout=30, recheck_s=30))
    wait_for(lambda: client.slots.get("t1") is not None, 5, "the SUBMIT", interval=0.005)
    client.slots.wake_all()  # what the I/O thread does after a reconnect
    thread.join(5)
    assert time.monotonic() - started < 5  # not recheck_s
    assert box["value"].final is OUTPUT and client.commands() == [p.SUBMIT, p.GET, p.FETCH]


def test_a_task_that_is_gone_ends_the_wait_with_its_rejection():
    client = StubClient()
    gone = p.Message(p.REJECTED, {"status": 404, "code": "not_found", "message": "no such task"})
    client.replies[p.GET] = gone
    outcome = run_task(client, HEADER, [], timeout=10, recheck_s=0.01)
    assert outcome.final is gone and client.commands() == [p.SUBMIT, p.GET]


def test_an_unreachable_or_busy_scheduler_is_waited_for_until_the_deadline_then_cancelled():
    client = StubClient()
    answers = iter(
        [
            SchedulerUnavailable("no answer", 5),
            p.Message(p.REJECTED, {"status": 503, "code": "overloaded", "message": "busy"}),
        ]
    )
    client.replies[p.GET] = lambda header: next(answers, _info("processing"))
    client.replies[p.CANCEL] = SchedulerUnavailable("still no answer", 5)  # best effort: swallowed
    started = time.monotonic()
    outcome = run_task(client, HEADER, [], timeout=0.3, recheck_s=0.02)
    assert 0.3 <= time.monotonic() - started < 5
    assert outcome.final is None and outcome.task_id == "t1"
    assert client.commands()[-1] == p.CANCEL and client.sent[-1][1] == {"task_id": "t1"}
    assert client.commands().count(p.GET) >= 3 and p.FETCH not in client.commands()
    assert client.released == ["t1"]


def test_a_client_that_closes_while_waiting_fails_the_request_at_once():
    client = StubClient()
    started = time.monotonic()
    thread, box = _in_background(lambda: run_task(client, HEADER, [], timeout=60, recheck_s=60))
    wait_for(lambda: client.slots.get("t1") is not None, 5, "the SUBMIT", interval=0.005)
    client.closed = True
    client.slots.wake_all()  # what SchedulerClient.close does
    thread.join(5)
    assert time.monotonic() - started < 5
    assert isinstance(box["error"], SchedulerUnavailable) and box["error"].retry_after == 7
    assert client.commands() == [p.SUBMIT] and client.released == ["t1"]


def test_a_task_accepted_twice_waits_on_the_slot_that_was_open_first():
    """Two callers with the same idempotency key get the same task; the first slot stays, so the
    second caller must wait on that slot's event (its own is never set)."""
    client = StubClient()
    first = threading.Event()
    client.slots.open("t1", first, time.monotonic())
    thread, box = _in_background(lambda: run_task(client, HEADER, [], timeout=10, recheck_s=60))
    wait_for(lambda: client.looked_up == ["t1"], 5, "the wait to begin", interval=0.005)
    client.slots.deliver(_done())
    thread.join(5)
    assert box["value"].final.command == p.DONE and client.commands() == [p.SUBMIT]


# ---------------------------------------------------------------------- run_output
def _outcome(final: p.Message | None, reply: p.Message = ACCEPTED) -> TaskOutcome:
    return TaskOutcome(reply, final)


def test_run_output_is_the_bytes_of_a_done_or_of_the_fetch():
    assert run_output(_outcome(_done()), 10, 5).body == b"DONE-BODY"
    assert run_output(_outcome(OUTPUT), 10, 5).body == b"FETCHED"


def test_run_output_raises_what_a_refused_submit_or_a_vanished_task_stands_for():
    full = p.Message(p.REJECTED, {"status": 503, "code": "overloaded", "message": "full", "retry_after": 9})
    with pytest.raises(Overloaded) as info:
        run_output(_outcome(None, reply=full), 10, 5)
    assert (info.value.code, info.value.retry_after) == ("overloaded", 9)
    with pytest.raises(NotFound):
        run_output(_outcome(p.Message(p.REJECTED, {"status": 404, "code": "not_found", "message": "x"})), 10, 5)
    with pytest.raises(TaskCancelled):
        run_output(_outcome(p.Message(p.REJECTED, {"status": 409, "code": "cancelled", "message": "x"})), 10, 5)


def test_run_output_of_no_end_is_a_504_naming_the_task_and_the_timeout():
    with pytest.raises(TaskTimeout) as info:
        run_output(_outcome(None), 1.5, 5)
    assert info.value.status == 504 and info.value.message == "Task t1 did not finish within 1.5s"


def test_run_output_of_an_unschedulable_task_is_a_503_to_retry_later_whether_done_or_fetched():
    fetched = p.Message(p.REJECTED, {"status": 500, "code": "task_failed", "message": "no node", "error_status": 503})
    for final in (_done("failed"), fetched):
        with pytest.raises(Overloaded) as info:
            run_output(_outcome(final), 10, 6)
        assert (info.value.status, info.value.code, info.value.retry_after) == (503, "unschedulable", 6)
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_run_output_keeps_a_failed_tasks_own_status():
    client_error = p.Message(p.DONE, {"task_id": "t1", "status": "failed", "error": "bad", "error_status": 400})
    with pytest.raises(TaskFailed) as info:
        run_output(_outcome(client_error), 10, 5)
    assert info.value.status == 400
    crashed = p.Message(p.DONE, {"task_id": "t1", "status": "failed", "error": "bug", "error_status": None})
    with pytest.raises(TaskFailed) as info:
        run_output(_outcome(crashed), 10, 5)
    assert info.value.status == 500
