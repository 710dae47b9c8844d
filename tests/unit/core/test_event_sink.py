"""``EventSink``: every ``task_event`` observer on its own dispatcher thread, with real threads and a
real plugin manager. A slow observer must delay neither the caller nor another observer; a raising
one is logged and keeps receiving events; a full queue drops instead of blocking; ``close`` flushes
within its deadline."""

from __future__ import annotations

import logging
import threading
import time

import pluggy
import pytest

from lama_cleaner.events import EventSink
from lama_cleaner.plugins import hookspecs
from lama_cleaner.tasks import TaskEvent
from tests.support.waiting import wait_for


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.threads: set[str] = set()

    @hookspecs.hookimpl
    def task_event(self, event):
        self.threads.add(threading.current_thread().name)
        self.seen.append(event.task_id)


class Gated:
    """Blocks in every call until the test opens the gate: a slow observer, without a sleep."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[str] = []

    @hookspecs.hookimpl
    def task_event(self, event):
        self.entered.set()
        self.gate.wait(30)
        self.seen.append(event.task_id)


class Raising:
    def __init__(self) -> None:
        self.calls = 0

    @hookspecs.hookimpl
    def task_event(self, event):
        self.calls += 1
        raise RuntimeError(f"observer bug on {event.task_id}")


def _sink(*observers: object, queue_size: int = 1000) -> tuple[EventSink, pluggy.PluginManager]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for i, observer in enumerate(observers):
        pm.register(observer, name=f"{type(observer).__name__.lower()}-{i}")
    return EventSink(pm, queue_size=queue_size), pm


def _event(task_id: str) -> TaskEvent:
    return TaskEvent(task_id=task_id, status="processing")


def _round(*task_ids: str) -> list[dict]:
    """A scheduler round's events, as the fields it hands over (``EventSink.emit_fields``)."""
    return [{"task_id": task_id, "status": "processing"} for task_id in task_ids]


def _emit_in_thread(sink: EventSink, ids: list[str]) -> threading.Thread:
    """Emit from another thread, so that an emit that blocked would be seen (the thread still alive)
    rather than hang the test."""
    thread = threading.Thread(target=lambda: [sink.emit(_event(i)) for i in ids], daemon=True)
    thread.start()
    return thread


def test_a_slow_observer_delays_neither_the_caller_nor_another_observer():
    gated, recorder = Gated(), Recorder()
    sink, _ = _sink(gated, recorder)
    emitter = _emit_in_thread(sink, ["a", "b", "c"])
    emitter.join(10)
    assert not emitter.is_alive(), "emit waited for an observer"
    wait_for(lambda: recorder.seen == ["a", "b", "c"], 10, "the fast observer to see every event")
    assert gated.seen == [], "the slow observer is still on its first event"
    assert threading.current_thread().name not in recorder.threads and len(recorder.threads) == 1
    gated.gate.set()
    assert sink.close(10)
    assert gated.seen == ["a", "b", "c"], "the slow observer got every event, in order, once released"


def test_each_observer_sees_its_events_in_order():
    recorder = Recorder()
    sink, _ = _sink(recorder)
    ids = [str(i) for i in range(500)]
    for task_id in ids:
        sink.emit(_event(task_id))
    assert sink.flush(10)
    assert recorder.seen == ids
    sink.close()


def test_a_raising_observer_is_logged_with_its_name_and_task_and_keeps_receiving(caplog):
    raising, recorder = Raising(), Recorder()
    sink, _ = _sink(raising, recorder)
    with caplog.at_level(logging.ERROR, logger="lama_cleaner.events"):
        sink.emit(_event("t1"))
        sink.emit(_event("t2"))
        assert sink.flush(10)
    assert raising.calls == 2 and recorder.seen == ["t1", "t2"]
    failures = [r.getMessage() for r in caplog.records if "failed for task" in r.getMessage()]
    assert failures == [
        "task_event observer raising-0 failed for task t1 (processing)",
        "task_event observer raising-0 failed for task t2 (processing)",
    ]
    sink.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking(caplog):
    gated = Gated()
    sink, _ = _sink(gated, queue_size=2)
    sink.emit(_event("first"))
    assert gated.entered.wait(10), "the dispatcher took the first event"
    with caplog.at_level(logging.WARNING, logger="lama_cleaner.events"):
        emitter = _emit_in_thread(sink, [f"e{i}" for i in range(10)])
        emitter.join(10)
        assert not emitter.is_alive(), "emit blocked on a full queue"
    assert sink.dropped() == {"gated-0": 8}, "two fit in the queue, the other eight are dropped"
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1 and "gated-0" in warnings[0], "one warning, not one per event"
    gated.gate.set()
    assert sink.close(10)
    assert gated.seen == ["first", "e0", "e1"]


def test_close_flushes_queued_events_and_gives_up_at_its_deadline():
    gated = Gated()
    sink, _ = _sink(gated)
    sink.emit(_event("stuck"))
    assert gated.entered.wait(10)
    started = time.monotonic()
    assert sink.close(timeout=0.5) is False, "an observer stuck past the deadline is reported"
    assert time.monotonic() - started < 5, "close returned at its deadline"
    sink.emit(_event("after close"))  # dropped, never raises
    gated.gate.set()
    wait_for(lambda: gated.seen == ["stuck"], 10, "the stuck call to finish")


def test_after_events_runs_behind_the_observers_queued_events():
    gated, recorder = Gated(), Recorder()
    sink, _ = _sink(gated, recorder)
    order: list[str] = []
    sink.emit(_event("a"))
    sink.after_events(gated, lambda: order.append(f"after {gated.seen}"))
    gated.gate.set()
    assert sink.flush(10)
    assert order == ["after ['a']"]
    ran: list[str] = []
    sink.after_events(object(), lambda: ran.append("now"))  # not an observer: runs at once
    assert ran == ["now"]
    sink.close()


@pytest.mark.parametrize("observers", [0, 1])
def test_flush_and_close_with_few_observers(observers):
    sink, _ = _sink(*[Recorder() for _ in range(observers)])
    sink.emit(_event("x"))
    assert sink.flush(5) and sink.close(5)


def test_a_round_of_events_is_one_hand_off_delivered_in_order_between_single_events():
    gated, recorder = Gated(), Recorder()
    sink, _ = _sink(gated, recorder, queue_size=5)
    sink.emit(_event("first"))
    assert gated.entered.wait(10), "the gated dispatcher holds the first event"
    sink.emit_fields(_round(*(f"r{i}" for i in range(50))))  # one queue slot for the whole round
    sink.emit(_event("after"))
    sink.emit_fields(_round("only"))  # a round of one
    assert sink.dropped() == {"gated-0": 0, "recorder-1": 0}, "a round of 50 took one slot"
    gated.gate.set()
    assert sink.flush(10)
    expected = ["first", *(f"r{i}" for i in range(50)), "after", "only"]
    assert gated.seen == expected and recorder.seen == expected
    sink.close()


def test_a_dropped_round_counts_each_of_its_events():
    gated = Gated()
    sink, _ = _sink(gated, queue_size=1)
    sink.emit(_event("first"))
    assert gated.entered.wait(10)
    sink.emit(_event("queued"))  # fills the queue
    sink.emit_fields(_round(*(f"r{i}" for i in range(7))))
    assert sink.dropped() == {"gated-0": 7}
    gated.gate.set()
    assert sink.close(10)
    assert gated.seen == ["first", "queued"]


def test_events_given_as_fields_become_task_events_on_the_observers_threads():
    recorder, other = Recorder(), Recorder()
    sink, _ = _sink(recorder, other)
    fields = [{"task_id": f"f{i}", "status": "queued", "queue": "cpu", "attempts": 0} for i in range(20)]
    sink.emit_fields(fields)
    sink.emit_fields([])  # nothing to hand over
    assert sink.flush(10)
    assert recorder.seen == other.seen == [f"f{i}" for i in range(20)]
    assert threading.current_thread().name not in recorder.threads | other.threads
    sink.close()


def test_only_observers_marked_may_lag_get_a_lingering_queue():
    from lama_cleaner.events import may_lag

    class Lagging:
        @hookspecs.hookimpl
        @may_lag
        def task_event(self, event):
            pass

    recorder, lagging = Recorder(), Lagging()
    sink, _ = _sink(recorder, lagging)
    sink.emit(_event("a"))
    lingers = {d.plugin_name: d._queue.linger_s for d in sink._observers()}  # noqa: SLF001
    assert lingers["recorder-0"] == 0.0 and lingers["lagging-1"] > 0
    sink.close()
