"""A real scheduler thread (real ZeroMQ, real SQLite journal) and scripted nodes that offer shared
memory (protocol minor 4): a real memfd region made in this process, which the scheduler maps through
``/proc/<pid>/fd/<fd>`` as it would a node's on the same host.

What must hold: the files of a TASK are where its references say, and only there (no blob frames);
a result named by reference is read from the slot its attempt was given and from nowhere else; a slot
is never handed to a second task while the node holds the first, across a re-registration too; and a
scheduler that cannot or may not map the region sends bytes as before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from lama_cleaner.plugins.distributed.wire import protocol as p
from lama_cleaner.plugins.distributed.wire.shared_memory import MAGIC, SharedRegion, supported
from tests.integration.scheduler.peers import Producer, SlottedNode
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(not supported(), reason="needs memfd_create and /proc (Linux)")

IMAGE = os.urandom(300_000)
MASK = os.urandom(5_000)


class SharedNode(SlottedNode):
    """A scripted node with ``slots`` that offers a real region and reads/writes it like a node."""

    def __init__(self, ctx: zmq.Context, sched: Any, slots: int, offer: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, sched, slots)
        self.region = SharedRegion.create(slots, 1024 * 1024)
        self.offer = offer if offer is not None else self.region.offer()
        self.slot_of: dict[str, int] = {}
        """The shared-memory slot of each held task that was given one."""

    def hello_header(self, running: p.Message | None) -> dict[str, Any]:
        header = super().hello_header(running)
        header["pid"] = os.getpid()
        header["shared_memory"] = self.offer
        header["task_slots"] = {t: s for t, s in self.slot_of.items() if t in self.held}
        return header

    def take_task(self) -> p.Message | None:
        msg = super().take_task()
        if msg is not None and "shared" in msg.header:
            self.slot_of[msg.header["task_id"]] = msg.header["shared"]["slot"]
        return msg

    def files(self, task: p.Message) -> dict[str, bytes]:
        ref = task.header["shared"]
        return self.region.read_inputs(ref["slot"], ref["blobs"])

    def shared_result(self, task: p.Message, body: bytes, slot: int | None = None) -> None:
        """Write ``body`` into the task's slot (or ``slot``) and send RESULT naming it."""
        slot = task.header["shared"]["slot"] if slot is None else slot
        length = self.region.write_output(slot, body)
        header = {"node_id": self.node_id, "task_id": task.header["task_id"], "attempt": task.header["attempt"],
                  "mimetype": "image/png", "headers": {}, "shared": {"slot": slot, "length": length}}  # fmt: skip
        self.control.send(p.RESULT, header)


@pytest.fixture
def shared_node(zctx: zmq.Context) -> Iterator[Callable[..., SharedNode]]:
    made: list[SharedNode] = []

    def make(sched: Any, slots: int = 2, offer: dict[str, Any] | None = None) -> SharedNode:
        node = SharedNode(zctx, sched, slots, offer)
        made.append(node)
        node.hello()
        node.ready()
        return node

    yield make
    for node in made:
        node.close()  # its sockets (a reconnect closes them too, and keeps the region)
        node.region.close()


def _submit(producer: Producer) -> str:
    task = {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": None, "idempotency_key": None}
    reply = producer.request(p.SUBMIT, {"task": task}, {"image": IMAGE, "mask": MASK})
    assert reply.command == p.ACCEPTED, reply.header
    return reply.header["task"]["id"]


def _status(producer: Producer, task_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(lambda: (t := producer.get(task_id))["status"] in statuses and t, 10, f"task in {statuses}")


def _output(producer: Producer, task_id: str) -> bytes:
    _status(producer, task_id, ("completed",))
    out = producer.request(p.FETCH, {"task_id": task_id})
    assert out.command == p.OUTPUT, out.header
    return out.blob_map()["body"]


def test_files_and_result_travel_through_the_nodes_shared_memory(scheduler_factory, shared_node, peers):
    sched = scheduler_factory()
    node = shared_node(sched)
    assert node.welcome is not None and node.welcome.header["shared_memory"] is True
    producer = peers("producer", sched)
    task_id = _submit(producer)
    task = node.expect_task()
    assert task.blobs == [] and task.header["blobs"] == [], "no file went as a frame"
    assert node.files(task) == {"image": IMAGE, "mask": MASK}
    body = os.urandom(200_000)
    node.shared_result(task, body)
    assert _output(producer, task_id) == body
    assert sched.stats()["shared_dispatches"] == 1


def test_each_held_task_has_its_own_slot_and_a_result_is_read_only_from_its_own(scheduler_factory, shared_node, peers):
    sched = scheduler_factory()
    node = shared_node(sched, slots=2)
    producer = peers("producer", sched)
    first, second = _submit(producer), _submit(producer)
    a, b = node.expect_task(), node.expect_task()
    assert {a.header["shared"]["slot"], b.header["shared"]["slot"]} == {0, 1}
    # A RESULT naming the other task's slot is not this attempt's: dropped, the task still runs.
    stale = sched.stats()["stale_messages"]
    node.shared_result(a, b"not-a-result", slot=b.header["shared"]["slot"])
    wait_for(lambda: sched.stats()["stale_messages"] == stale + 1, 5, "the misdirected RESULT to be dropped")
    assert producer.get(a.header["task_id"])["status"] == "processing"
    node.shared_result(a, b"first")
    node.shared_result(b, b"second")
    by_task = {a.header["task_id"]: b"first", b.header["task_id"]: b"second"}
    assert _output(producer, first) == by_task[first] and _output(producer, second) == by_task[second]


def test_a_slot_still_used_by_a_task_the_node_kept_across_a_reconnect_is_not_given_again(
    scheduler_factory, shared_node, peers
):
    sched = scheduler_factory()
    node = shared_node(sched, slots=2)
    producer = peers("producer", sched)
    kept_id = _submit(producer)
    kept = node.expect_task()
    kept_slot = kept.header["shared"]["slot"]
    # The node reconnects (new sockets, new registration) still running the task in its slot.
    node.reconnect()
    node.hello()
    assert node.welcome is not None and node.welcome.header["shared_memory"] is True
    node.ready()
    other_id = _submit(producer)
    other = node.expect_task()
    assert other.header["shared"]["slot"] != kept_slot
    node.shared_result(kept, b"kept")
    node.shared_result(other, b"other")
    assert _output(producer, kept_id) == b"kept" and _output(producer, other_id) == b"other"


def test_a_scheduler_with_shared_memory_off_sends_bytes(scheduler_factory, shared_node, peers):
    sched = scheduler_factory(shared_memory_mb=0)
    node = shared_node(sched)
    assert node.welcome is not None and node.welcome.header["shared_memory"] is False
    producer = peers("producer", sched)
    task_id = _submit(producer)
    task = node.expect_task()
    assert "shared" not in task.header and task.blob_map() == {"image": IMAGE, "mask": MASK}
    node.result(task, b"as-bytes")
    assert _output(producer, task_id) == b"as-bytes"
    assert sched.stats()["shared_dispatches"] == 0


def test_an_offer_of_a_file_that_is_not_a_shared_region_is_refused(scheduler_factory, shared_node, peers):
    """A peer cannot make the scheduler map (and write uploads into) an ordinary file, even one that
    starts with the magic and the token it names."""
    sched = scheduler_factory()
    with tempfile.TemporaryFile() as fh:
        token = os.urandom(16)
        fh.write(MAGIC + token)
        fh.truncate(4096 + 2 * 2 * 1024 * 1024)
        fh.flush()
        forged = {"path": f"/proc/{os.getpid()}/fd/{fh.fileno()}", "token": token.hex(), "slots": 2,
                  "area_bytes": 1024 * 1024}  # fmt: skip
        node = shared_node(sched, offer=forged)
        assert node.welcome is not None and node.welcome.header["shared_memory"] is False
        producer = peers("producer", sched)
        _submit(producer)
        task = node.expect_task()
        assert "shared" not in task.header and task.blob_map()["image"] == IMAGE
        fh.seek(4096)
        assert fh.read(16) == b"\0" * 16, "nothing was written into the file"
