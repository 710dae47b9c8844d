"""A burst of producer requests does not starve nodes: node messages are handled every round, producer
requests a bounded number per round (``scheduler.service.PRODUCER_MESSAGES_PER_ROUND``)."""

from __future__ import annotations

import time

from lama_cleaner.plugins.distributed.scheduler.service import is_node_message
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import ready_node

BURST = 2000


def test_node_messages_are_told_apart_from_producer_requests() -> None:
    assert is_node_message([b"id", b"LC1", b"RESULT", b"{}", b"body"])
    assert is_node_message([b"id", b"LC1", b"HEARTBEAT", b"{}"])
    assert not is_node_message([b"id", b"LC1", b"SUBMIT", b"{}"])
    assert not is_node_message([b"id", b"LC1"])  # garbage counts as a producer's (judged on its turn)


def test_a_submit_burst_does_not_keep_a_finished_node_waiting(scheduler_factory, peers) -> None:
    """2000 SUBMITs sent at once; a node that answers every TASK at once keeps getting work while the
    burst is being journaled, instead of one task per long round of hundreds of SUBMITs."""
    sched = scheduler_factory(max_queued=BURST + 10, max_queued_per_queue=BURST + 10)
    node = ready_node(peers, sched)
    producer = peers("producer", sched)
    task = {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": None}
    for i in range(BURST):
        producer.send(p.SUBMIT, {"req_id": f"b{i}", "task": task}, {"image": b"img%d" % i, "mask": b"mask"})
    accepted = done_during_burst = 0
    deadline = time.monotonic() + 60
    while accepted < BURST:
        assert time.monotonic() < deadline, f"only {accepted} of {BURST} SUBMITs accepted"
        sent = node.take_task()
        if sent is not None:
            node.result(sent)
            done_during_burst += 1
        producer.pump()
        accepted += sum(1 for m in producer.inbox if m.command == p.ACCEPTED)
        producer.inbox.clear()
    # One task per round of up to 512 SUBMITs would be a handful; 16 per round leaves room for ~100.
    assert done_during_burst >= 40, f"the node ran only {done_during_burst} tasks during the burst"
