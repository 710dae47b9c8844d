"""``producer/result_slots.py``: the registry the client's I/O thread fills with a task's DONE or
terminal status, and the wake-ups a waiting ``/inpaint`` relies on (no sockets, no threads but the
test's own)."""

from __future__ import annotations

import threading

from lama_cleaner.plugins.distributed.producer.result_slots import ResultSlots
from lama_cleaner.plugins.distributed.wire import protocol as p


def _done(task_id: str, status: str = "completed", body: bytes = b"B") -> p.Message:
    if status == "completed":
        return p.Message(
            p.DONE, {"task_id": task_id, "status": status, "mimetype": "image/png", "blobs": ["body"]}, [body]
        )
    return p.Message(p.DONE, {"task_id": task_id, "status": status, "error": "x"})


def test_a_done_fills_the_open_slot_once_and_wakes_its_waiter():
    slots = ResultSlots(ttl_s=60)
    event = threading.Event()
    slot = slots.open("t1", event, now=0)
    assert len(slots) == 1 and "t1" in slots and not slot.finished
    first = _done("t1", body=b"first")
    assert slots.deliver(first) and event.is_set()
    assert slot.message is first and slot.status == "completed" and slot.finished
    event.clear()
    assert not slots.deliver(_done("t1", body=b"again"))  # a repeat changes nothing, wakes nobody
    assert slot.message is first and not event.is_set()


def test_a_done_nobody_waits_for_is_dropped():
    slots = ResultSlots(ttl_s=60)
    assert not slots.deliver(_done("never-opened"))
    event = threading.Event()
    slots.open("t1", event, now=0)
    slots.release("t1")
    slots.release("t1")  # twice is fine
    assert not slots.deliver(_done("t1")) and not event.is_set() and len(slots) == 0 and slots.get("t1") is None


def test_a_terminal_event_marks_the_slot_without_a_message_and_the_first_end_wins():
    slots = ResultSlots(ttl_s=60)
    event = threading.Event()
    slot = slots.open("t1", event, now=0)
    slots.mark_terminal("t1", "failed")
    assert event.is_set() and slot.finished and slot.status == "failed" and slot.message is None
    event.clear()
    slots.mark_terminal("t1", "completed")  # already known: no second wake-up, no change
    assert not event.is_set() and slot.status == "failed"
    # A DONE after the EVENT (another connection's order) still lands: the waiter prefers its bytes.
    assert slots.deliver(_done("t1", status="failed")) and slot.message is not None and slot.status == "failed"
    slots.mark_terminal("unknown", "completed")  # no slot: nothing happens


def test_a_done_after_its_terminal_event_keeps_the_status_and_adds_the_message():
    slots = ResultSlots(ttl_s=60)
    slot = slots.open("t1", threading.Event(), now=0)
    slots.mark_terminal("t1", "completed")
    done = _done("t1")
    assert slots.deliver(done) and slot.message is done and slot.status == "completed"


def test_opening_an_open_task_again_keeps_the_first_slot_and_what_it_holds():
    slots = ResultSlots(ttl_s=60)
    first_event, second_event = threading.Event(), threading.Event()
    first = slots.open("t1", first_event, now=0)
    slots.deliver(_done("t1"))
    again = slots.open("t1", second_event, now=5)
    assert again is first and again.event is first_event and again.message is not None


def test_wake_all_sets_every_open_event_and_changes_nothing_else():
    slots = ResultSlots(ttl_s=60)
    events = [threading.Event() for _ in range(3)]
    opened = [slots.open(f"t{i}", e, now=0) for i, e in enumerate(events)]
    slots.wake_all()
    assert all(e.is_set() for e in events)
    assert all(s.message is None and s.status is None for s in opened) and len(slots) == 3


def test_expire_drops_only_slots_older_than_the_ttl():
    slots = ResultSlots(ttl_s=10)
    slots.open("old", threading.Event(), now=0)
    slots.open("new", threading.Event(), now=5)
    assert slots.expire(now=10) == 0  # expires at 10, dropped once it is past
    assert slots.expire(now=10.5) == 1
    assert "old" not in slots and "new" in slots


def test_concurrent_delivery_and_release_never_lose_a_wake_up_nor_raise():
    """The I/O thread delivers while callers release: every delivered slot's waiter was woken."""
    slots = ResultSlots(ttl_s=60)
    events = {f"t{i}": threading.Event() for i in range(500)}
    for task_id, event in events.items():
        slots.open(task_id, event, now=0)
    delivered: list[str] = []

    def io_thread() -> None:
        for task_id in events:
            if slots.deliver(_done(task_id)):
                delivered.append(task_id)

    def releaser() -> None:
        for task_id in list(events)[::2]:
            slots.release(task_id)

    threads = [threading.Thread(target=io_thread), threading.Thread(target=releaser)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(events[t].is_set() for t in delivered)
    assert all(slots.get(t) is None for t in list(events)[::2])
    assert set(list(events)[1::2]) <= set(delivered)  # never released: always delivered
