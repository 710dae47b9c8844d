"""The scheduler's parts without its loop or any socket: a node registers, a producer submits, the
dispatcher hands the task out, the node reports the result, the timers declare a silent node lost.

Each part is built the way ``Scheduler`` builds it, from one :class:`SchedulerState` and an
:class:`EventPublisher`, over a real journal in a temporary folder; what they would send is read
from the outbox (``Out`` names the control socket or a queue, never a socket object).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.journal.task_store import TaskStore
from lama_cleaner.plugins.distributed.scheduler.dispatcher import Dispatcher
from lama_cleaner.plugins.distributed.scheduler.event_publishing import EventPublisher
from lama_cleaner.plugins.distributed.scheduler.node_handlers import NodeHandlers
from lama_cleaner.plugins.distributed.scheduler.outbox import Out
from lama_cleaner.plugins.distributed.scheduler.plugin_calls import PluginCalls
from lama_cleaner.plugins.distributed.scheduler.producer_handlers import ProducerHandlers
from lama_cleaner.plugins.distributed.scheduler.requeue import Requeue
from lama_cleaner.plugins.distributed.scheduler.scheduler_state import SchedulerState
from lama_cleaner.plugins.distributed.scheduler.stats_reporting import StatsReporter
from lama_cleaner.plugins.distributed.scheduler.timers import Timers
from lama_cleaner.plugins.distributed.scheduler.unschedulable import UnschedulableWatch
from lama_cleaner.plugins.distributed.wire import protocol as p
from lama_cleaner.tasks import TaskEvent

NODE = b"node-ctrl"
NODE_QUEUE = b"node-cpu"
WEB = b"web"


class Parts:
    """The collaborators, wired as ``Scheduler.__init__`` wires them."""

    def __init__(self, tmp_path: Any) -> None:
        cfg = Config()
        cfg.distributed.heartbeat_interval_s = 1.0
        cfg.distributed.heartbeat_liveness = 2
        self.seen: list[TaskEvent] = []
        self.state = SchedulerState(cfg.distributed, lambda kind, name: "cpu")
        self.state.store = TaskStore(tmp_path / "journal.sqlite3", blob_dir=tmp_path / "blobs")
        self.state.endpoints.update({"queues": {q: f"inproc://{q}" for q in self.state.queues}})
        self.events = EventPublisher(self.state, on_event=self.seen.append, events=None, emit_task_events=False)
        self.unschedulable = UnschedulableWatch(self.state, self.events)
        self.stats = StatsReporter(self.state, self.events, self.unschedulable)
        self.requeue = Requeue(self.state, self.events)
        self.node_side = NodeHandlers(self.state, self.events, self.requeue)
        calls = PluginCalls(None, None, lambda ident, frames: None)
        self.producer_side = ProducerHandlers(self.state, self.events, self.stats, calls, self.node_side.drain)
        self.dispatcher = Dispatcher(self.state, self.events)
        self.timers = Timers(self.state, self.events, self.requeue, self.unschedulable)
        self.handlers = {**self.node_side.handlers(), **self.producer_side.handlers()}

    def handle(self, ident: bytes, command: str, header: dict[str, Any], now: float, blobs: Any = ()) -> list[Out]:
        msg = p.decode(p.encode(command, header, list(blobs)), receiver="scheduler")
        outbox: list[Out] = []
        with self.state.journal().batch():
            self.handlers[command](ident, msg, now, outbox)
        self.events.publish()
        return outbox


def decoded(out: Out) -> p.Message:
    return p.decode(out.frames)


@pytest.fixture
def parts(tmp_path) -> Iterator[Parts]:
    made = Parts(tmp_path)
    yield made
    made.state.journal().close()


def hello(parts: Parts, now: float) -> str:
    caps = {"device": "cpu", "models": ["cv2"], "queues_requested": ["cpu"], "labels": {}}
    header = {"node_id": "n1", "name": "n1", "version": "test", "pid": 1, "capabilities": caps,
              "loaded_model": None, "task_id": None, "attempt": None}  # fmt: skip
    [welcome] = parts.handle(NODE, p.HELLO, header, now)
    assert welcome.queue is None and decoded(welcome).command == p.WELCOME
    assert decoded(welcome).header["queues"] == {"cpu": "inproc://cpu"}
    return "n1"


def test_every_scheduler_command_has_exactly_one_handler(parts):
    node_side, producer_side = set(parts.node_side.handlers()), set(parts.producer_side.handlers())
    assert not node_side & producer_side
    assert node_side | producer_side | {p.READY} == set(p.SCHEMAS["scheduler"])


def test_a_task_goes_from_submit_to_result_through_the_parts(parts):
    now = 1000.0
    node_id = hello(parts, now)
    parts.node_side.on_ready("cpu", NODE_QUEUE, p.decode(p.encode(p.READY, {"node_id": node_id})), now)

    task = {"kind": "inpaint", "name": "cv2", "form": {}, "submitter": "sid"}
    header = {"req_id": "r1", "task": task, "want_result": True, "blobs": ["image", "mask"]}
    [accepted] = parts.handle(WEB, p.SUBMIT, header, now, [b"img", b"msk"])
    info = decoded(accepted).header["task"]
    assert decoded(accepted).command == p.ACCEPTED and info["status"] == "queued" and info["queue"] == "cpu"

    outbox: list[Out] = []
    with parts.state.journal().batch():
        parts.dispatcher.dispatch(now, outbox)
    [sent] = outbox
    assert sent.ident == NODE_QUEUE and sent.queue == "cpu" and sent.on_fail is not None
    task_msg = decoded(sent)
    assert task_msg.command == p.TASK and task_msg.header["task_id"] == info["id"] and task_msg.header["attempt"] == 1
    assert parts.state.nodes[node_id].current_task == info["id"]

    result = {"node_id": node_id, "task_id": info["id"], "attempt": 1, "mimetype": "image/png", "headers": {},
              "blobs": ["body"]}  # fmt: skip
    assert parts.handle(NODE, p.RESULT, result, now + 1, [b"png"]) == []
    assert parts.state.journal().get(info["id"]).status == "completed"
    assert [e.status for e in parts.seen] == ["queued", "processing", "completed"]
    counters = parts.state.counters.values()
    assert (counters["submitted"], counters["dispatched"], counters["completed"]) == (1, 1, 1)
    stats = parts.stats.build(now + 1)
    assert stats.recent[0].task_id == info["id"] and stats.nodes[0].tasks_done == 1


def test_a_silent_node_goes_offline_and_its_task_is_queued_again(parts):
    now = 1000.0
    node_id = hello(parts, now)
    parts.node_side.on_ready("cpu", NODE_QUEUE, p.decode(p.encode(p.READY, {"node_id": node_id})), now)
    task = {"kind": "inpaint", "name": "cv2", "form": {}}
    [accepted] = parts.handle(WEB, p.SUBMIT, {"req_id": "r1", "task": task}, now)
    task_id = decoded(accepted).header["task"]["id"]
    with parts.state.journal().batch():
        parts.dispatcher.dispatch(now, [])

    outbox: list[Out] = []
    later = now + parts.state.liveness_window + 0.5
    with parts.state.journal().batch():
        parts.timers.run(later, outbox)
    assert parts.state.nodes[node_id].offline and parts.state.counters.values()["nodes_lost"] == 1
    rec = parts.state.journal().get(task_id)
    assert rec.status == "queued" and rec.attempts == 1  # charged: the node may have run it
    assert parts.state.counters.values()["requeued_on_node_loss"] == 1


def test_drain_from_a_producer_goes_through_the_node_side(parts):
    node_id = hello(parts, 1000.0)
    [drain, reply] = parts.handle(WEB, p.DRAIN, {"req_id": "r1", "node_id": node_id}, 1000.0)
    assert drain.ident == NODE and decoded(drain).command == p.DRAIN
    assert decoded(reply).command == p.STATS and decoded(reply).header["node"]["state"] == "draining"
    assert node_id in parts.state.drained
