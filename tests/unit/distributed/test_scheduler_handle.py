"""The scheduler handle's pure parts: the snapshot's JSON form, the STATS/CALL/ANSWER messages, plugin
calls without a plugin, and which registry changes become node events."""

from __future__ import annotations

import pluggy
import pytest

from lama_cleaner.plugins.distributed.scheduler.handle import (
    NodeInfo,
    QueueStats,
    SchedulerCallError,
    SchedulerStats,
    TaskSample,
    call_plugins,
    stats_from_dict,
    stats_to_dict,
)
from lama_cleaner.plugins.distributed.scheduler.node_registry import HeldAttempt, NodeEntry, reported_models
from lama_cleaner.plugins.distributed.scheduler.snapshots import NodeWatch
from lama_cleaner.plugins.distributed.wire import protocol as p


def _stats() -> SchedulerStats:
    node = NodeInfo(
        "n1", "one", "busy", ("cpu",), ("lama",), {"zone": "a"}, "cpu", "t1", 40.0, 0.3, ("lama",), 2, False
    )
    sample = TaskSample("t0", "cpu", "inpaint", "lama", "failed", 0.1, 0.2, 1000.0, "n1", 2, "boom")
    return SchedulerStats(1000.5, {"completed": 1}, {"cpu": QueueStats("cpu", 3, 1, 2.5, 1)}, (node,), (sample,))


def test_a_snapshot_survives_its_json_form_and_ignores_unknown_fields():
    stats = _stats()
    data = p.decode(p.encode(p.STATS, {"req_id": 1, "stats": stats_to_dict(stats)}), receiver="producer")
    assert stats_from_dict(data.header["stats"]) == stats
    newer = stats_to_dict(stats)
    newer["nodes"][0]["gpu_temperature"] = 70
    newer["extra"] = {}
    assert stats_from_dict(newer) == stats


def test_stats_and_call_are_requests_a_scheduler_accepts_and_answer_one_a_producer_accepts():
    assert p.decode(p.encode(p.STATS, {"req_id": "a"}), receiver="scheduler").command == p.STATS
    call = p.encode(p.CALL, {"req_id": "b", "name": "x.y", "payload": {"k": 1}})
    assert p.decode(call, receiver="scheduler").header["payload"] == {"k": 1}
    with pytest.raises(p.ProtocolError):
        p.decode(p.encode(p.CALL, {"req_id": "b", "name": "x.y", "payload": []}), receiver="scheduler")
    assert p.decode(p.encode(p.ANSWER, {"req_id": "b", "result": {}}), receiver="producer").command == p.ANSWER
    with pytest.raises(p.ProtocolError):
        p.decode(p.encode(p.ANSWER, {"req_id": "b", "result": {}}), receiver="scheduler")


def test_a_call_nobody_answers_is_a_lookup_error_and_a_bad_answer_a_call_error():
    with pytest.raises(LookupError):
        call_plugins(None, None, "x.y", {})
    pm = pluggy.PluginManager("lama_cleaner")

    class Spec:
        @pluggy.HookspecMarker("lama_cleaner")(firstresult=True)
        def scheduler_call(self, name, payload, config): ...

    class Answers:
        @pluggy.HookimplMarker("lama_cleaner")
        def scheduler_call(self, name):
            return {"list": "no dict"} if name == "ok" else ["not", "a", "dict"] if name == "bad" else None

    pm.add_hookspecs(Spec)
    pm.register(Answers())
    assert call_plugins(pm, None, "ok", {}) == {"list": "no dict"}
    with pytest.raises(SchedulerCallError, match="not a dict"):
        call_plugins(pm, None, "bad", {})
    with pytest.raises(LookupError, match="'other'"):
        call_plugins(pm, None, "other", {})


def _node(**kw) -> NodeEntry:
    node = NodeEntry("n1", "one", b"id", {"device": "cpu", "labels": {"a": "b"}}, {"cpu"}, {}, registered_at=1.0)
    for key, value in kw.items():
        setattr(node, key, value)
    return node


def test_registry_changes_become_node_events_once():
    watch = NodeWatch()
    node = _node()
    nodes = {"n1": node}
    assert [e.kind for e in watch.changes(nodes, 2.0, None)] == ["joined"]  # no READY yet: joining
    assert watch.changes(nodes, 2.1, None) == []
    node.queue_idents["cpu"] = b"q"
    assert [e.kind for e in watch.changes(nodes, 2.2, None)] == ["idle"]
    node.hold("t1", 1, 2.3)
    [busy] = watch.changes(nodes, 2.3, None)
    assert busy.kind == "busy" and busy.node.current_task == "t1" and busy.node.labels == {"a": "b"}
    # A reconnect, still busy:
    again = _node(registered_at=3.0, held={"t1": HeldAttempt(1, 3.0)}, queue_idents={"cpu": b"q2"})
    nodes["n1"] = again
    assert watch.changes(nodes, 3.1, None) == []
    again.release("t1")
    again.draining = True
    assert [e.kind for e in watch.changes(nodes, 3.2, None)] == ["draining"]
    again.offline, again.left = True, True
    [left] = watch.changes(nodes, 3.3, None)
    assert left.kind == "left" and left.node.left and left.node.heartbeat_age_s is None
    nodes["n1"] = _node(registered_at=4.0, queue_idents={"cpu": b"q3"})
    assert [e.kind for e in watch.changes(nodes, 4.1, None)] == ["joined", "idle"]
    nodes["n1"].offline = True
    assert [e.kind for e in watch.changes(nodes, 4.2, None)] == ["offline"]


def test_reported_models_come_from_the_list_or_the_single_model():
    assert reported_models({"loaded_models": ["a", "b"], "loaded_model": "a"}, ()) == ("a", "b")
    assert reported_models({"loaded_model": "lama"}, ()) == ("lama",)
    assert reported_models({"loaded_model": None}, ("old",)) == ()
    assert reported_models({}, ("old",)) == ("old",)
