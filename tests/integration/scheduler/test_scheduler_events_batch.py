"""WATCH ``batch_events``: a watcher that opts in gets each round's events as one EVENTS message,
in order and after the round's DONEs; the others keep getting one EVENT per event."""

from __future__ import annotations

from typing import Any

from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import Producer, ready_node, watching_producer
from tests.support.waiting import wait_for

_EVENT_COMMANDS = (p.EVENT, p.EVENTS)
_PATIENT = {"heartbeat_liveness": 40}
"""The test watchers send no keepalive WATCH: a 10 s liveness keeps them watching on a busy machine."""


def _batch_watcher(peers, sched) -> Producer:
    producer = peers("producer", sched)
    pong = producer.request(p.WATCH, {"producer_id": "web-batch", "batch_events": True})
    assert pong.command == p.PONG
    return producer


def _events_of(msg: p.Message) -> list[dict[str, Any]]:
    if msg.command == p.EVENTS:
        return msg.header["events"]
    return [msg.header] if msg.command == p.EVENT else []


def _flat(messages: list[p.Message]) -> list[dict[str, Any]]:
    return [event for msg in messages for event in _events_of(msg)]


def _take_event_messages(producer: Producer) -> list[p.Message]:
    """Every EVENT / EVENTS received so far, in arrival order (removed from the inbox)."""
    producer.pump()
    taken = [m for m in producer.inbox if m.command in _EVENT_COMMANDS]
    producer.inbox[:] = [m for m in producer.inbox if m.command not in _EVENT_COMMANDS]
    return taken


def _collect(producer: Producer, until, message: str) -> list[p.Message]:
    """Event messages in arrival order, until ``until(flattened events)`` holds."""
    got: list[p.Message] = []

    def enough() -> bool:
        got.extend(_take_event_messages(producer))
        return until(_flat(got))

    wait_for(enough, timeout=10, message=message)
    return got


def _has(task_id: str, status: str):
    return lambda events: any(e["task_id"] == task_id and e["status"] == status for e in events)


def _index_of(producer: Producer, pred, message: str) -> int:
    """Index in the inbox (arrival order, nothing removed) of the first message matching ``pred``."""

    def find() -> tuple[int] | None:
        producer.pump()
        return next(((i,) for i, m in enumerate(producer.inbox) if pred(m)), None)

    return wait_for(find, timeout=10, message=message)[0]


def _holds(task_id: str, status: str):
    return lambda m: _has(task_id, status)(_events_of(m))


def test_a_burst_reaches_a_batching_watcher_in_fewer_messages_with_the_same_events(scheduler_factory, peers):
    sched = scheduler_factory(**_PATIENT)
    batched = _batch_watcher(peers, sched)
    plain = watching_producer(peers, sched)  # did not opt in: one EVENT per event, as before
    node = ready_node(peers, sched)
    submitter = peers("producer", sched)

    # A burst: every SUBMIT is on the wire before the first reply is read.
    count = 6
    task = {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": "sid-1", "idempotency_key": None}
    for i in range(count):
        submitter.send(p.SUBMIT, {"req_id": f"burst-{i}", "task": task}, {"image": b"img", "mask": b"mask"})
    ids = [submitter.expect(p.ACCEPTED, lambda m, i=i: m.header["req_id"] == f"burst-{i}").header["task"]["id"]
           for i in range(count)]  # fmt: skip
    # Every RESULT frees the node, so the round that completes a task dispatches the next one too:
    # such a round has two events, whatever way the SUBMITs were spread over rounds.
    for _ in range(count):
        node.result(node.expect_task())

    all_done = lambda events: all(_has(t, "completed")(events) for t in ids)  # noqa: E731
    got_batched = _collect(batched, all_done, "every completed event at the batching watcher")
    got_plain = _collect(plain, all_done, "every completed event at the plain watcher")

    assert {m.command for m in got_plain} == {p.EVENT}
    assert any(m.command == p.EVENTS for m in got_batched)
    assert all(len(m.header["events"]) >= 2 for m in got_batched if m.command == p.EVENTS)
    assert len(got_batched) < len(got_plain)
    # The same events, in the same order, as the watcher that gets them one by one.
    assert _flat(got_batched) == _flat(got_plain)
    events = _flat(got_batched)
    assert [e["task_id"] for e in events if e["status"] == "queued"] == ids  # in submission order
    for task_id in ids:
        assert [e["status"] for e in events if e["task_id"] == task_id] == ["queued", "processing", "completed"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)


def test_every_watch_restates_the_choice(scheduler_factory, peers):
    sched = scheduler_factory(**_PATIENT)
    producer = _batch_watcher(peers, sched)
    node = ready_node(peers, sched)
    first = producer.submit().header["task"]["id"]
    running = node.expect_task()
    second = producer.submit().header["task"]["id"]  # waits: the node is busy
    node.result(running)  # one round: first completes, second is dispatched
    got = _collect(producer, _has(second, "processing"), "the second task dispatched")
    holder = next(m for m in got if _holds(first, "completed")(m))
    assert holder.command == p.EVENTS
    assert [(e["task_id"], e["status"]) for e in holder.header["events"]] == [
        (first, "completed"), (second, "processing"),
    ]  # fmt: skip

    assert producer.request(p.WATCH, {"producer_id": "web-batch", "batch_events": False}).command == p.PONG
    running = node.expect_task()
    third = producer.submit().header["task"]["id"]
    # What came before this point is not the subject here; the third task's "queued" event is sent
    # right after its ACCEPTED and may not have been read yet, so wait for it before clearing.
    _collect(producer, _has(third, "queued"), "the third task's queued event")
    node.result(running)  # again a round with two events, now for a watcher that opted out
    got = _collect(producer, _has(third, "processing"), "the third task dispatched")
    assert [m.command for m in got] == [p.EVENT, p.EVENT]
    assert [(e["task_id"], e["status"]) for e in _flat(got)] == [(second, "completed"), (third, "processing")]


def test_done_comes_before_the_batch_with_the_terminal_event(scheduler_factory, peers):
    sched = scheduler_factory(**_PATIENT)
    producer = _batch_watcher(peers, sched)  # watches and submits on one connection
    node = ready_node(peers, sched)
    first = producer.submit(want_result=True).header["task"]["id"]
    running = node.expect_task()
    second = producer.submit(want_result=True).header["task"]["id"]
    node.result(running, body=b"first-out")

    batch_at = _index_of(producer, _holds(first, "completed"), "the first task's completed event")
    done_at = _index_of(producer, lambda m: m.command == p.DONE and m.header["task_id"] == first, "DONE")
    assert done_at < batch_at, "DONE must arrive before the batch holding the task's terminal event"
    assert producer.inbox[batch_at].command == p.EVENTS  # the round also dispatched the second task
    assert _holds(second, "processing")(producer.inbox[batch_at])
    assert producer.inbox[done_at].blob_map() == {"body": b"first-out"}

    producer.inbox.clear()
    node.result(node.expect_task(), body=b"second-out")  # a round with one event: a plain EVENT
    event_at = _index_of(producer, _holds(second, "completed"), "the second task's completed event")
    done_at = _index_of(producer, lambda m: m.command == p.DONE and m.header["task_id"] == second, "DONE")
    assert done_at < event_at
    assert producer.inbox[event_at].command == p.EVENT
    assert sched.stats()["done_sent"] == 2


def test_a_mistyped_batch_events_is_refused(scheduler_factory, peers):
    sched = scheduler_factory(**_PATIENT)
    producer = peers("producer", sched)
    reply = producer.request(p.WATCH, {"producer_id": "web", "batch_events": "yes"})
    assert reply.command == p.REJECTED and reply.header["code"] == "malformed"
    assert sched.stats()["watchers"] == 0
