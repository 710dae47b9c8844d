"""routing.py: queue of a task, queues of a node, and which idle node gets which task."""

from __future__ import annotations

import pytest

from lama_cleaner.errors import ClientError
from lama_cleaner.plugins.distributed.config import DistributedConfig
from lama_cleaner.plugins.distributed.scheduler.routing import (
    IdleNode,
    RoutingError,
    WaitingTask,
    allowed_queues,
    choose_node,
    plan_dispatch,
    route_task,
)

CLASSES = {("inpaint", "lama"): "gpu", ("inpaint", "sd1.5"): "gpu", ("inpaint", "cv2"): "cpu",
           ("plugin", "MakeGIF"): "cpu", ("plugin", "RealESRGAN"): "gpu"}  # fmt: skip


def rc(kind: str, name: str) -> str | None:
    return CLASSES.get((kind, name))


def route(kind, name, rules=None, queues=("gpu", "cpu")):
    return route_task(kind, name, resource_class_of=rc, rules=rules or {}, queues=list(queues))


def test_defaults_by_resource_class():
    assert route("inpaint", "lama") == "gpu"
    assert route("inpaint", "sd1.5") == "gpu"
    assert route("inpaint", "cv2") == "cpu"
    assert route("plugin", "MakeGIF") == "cpu"


def test_rules_come_first_and_may_be_kind_specific():
    assert route("inpaint", "lama", {"lama": "cpu"}) == "cpu"
    assert route("plugin", "RealESRGAN", {"plugin:RealESRGAN": "cpu", "RealESRGAN": "gpu"}) == "cpu"
    assert route("inpaint", "unknown-but-routed", {"unknown-but-routed": "gpu"}) == "gpu"


def test_unknown_names_and_bad_routes_are_clear_client_errors():
    with pytest.raises(RoutingError, match="Model not found: nope") as err:
        route("inpaint", "nope")
    assert isinstance(err.value, ClientError) and err.value.status == 400
    with pytest.raises(RoutingError, match="Plugin not found"):
        route("plugin", "Nope")
    with pytest.raises(RoutingError, match="not configured"):
        route("inpaint", "lama", {"lama": "tpu"})
    with pytest.raises(RoutingError, match="no queue serves"):
        route("inpaint", "lama", queues=("a", "b"))
    with pytest.raises(RoutingError):
        route("inpaint", "lama", queues=())


def test_single_queue_takes_everything():
    assert route("inpaint", "lama", queues=("default",)) == "default"


def test_allowed_queues_gpu_needs_cuda():
    cfg = DistributedConfig()
    assert allowed_queues({"device": "cuda"}, [], cfg) == ({"gpu", "cpu"}, {})
    assert allowed_queues({"device": "cuda:1"}, ["gpu"], cfg) == ({"gpu"}, {})
    allowed, rejected = allowed_queues({"device": "cpu"}, [], cfg)
    assert allowed == {"cpu"} and "CUDA" in rejected["gpu"]
    allowed, rejected = allowed_queues({"device": "mps"}, ["gpu", "tpu"], cfg)
    assert allowed == set() and set(rejected) == {"gpu", "tpu"}
    cfg.gpu_queue_requires_gpu = False
    assert allowed_queues({"device": "cpu"}, ["gpu"], cfg) == ({"gpu"}, {})


def node(node_id, queues=("cpu",), idle_since=0.0, loaded=None, models=None):
    return IdleNode(node_id, frozenset(queues), idle_since, loaded, frozenset(models) if models else None)


def task(task_id, name="lama", queue="cpu", kind="inpaint"):
    return WaitingTask(task_id, kind, name, queue)


def test_affinity_then_least_recently_used():
    nodes = [node("a", idle_since=1.0), node("b", idle_since=2.0, loaded="lama"), node("c", idle_since=0.5)]
    assert choose_node(task("t"), nodes).node_id == "b"
    assert choose_node(task("t", name="cv2"), nodes).node_id == "c"


def test_eligibility_queue_and_models():
    nodes = [node("gpu-only", queues=("gpu",)), node("no-lama", models=["cv2"])]
    assert choose_node(task("t"), nodes) is None
    assert choose_node(task("t", name="cv2"), nodes).node_id == "no-lama"
    assert choose_node(task("t", queue="gpu"), nodes).node_id == "gpu-only"


def test_plan_is_fifo_one_task_per_node():
    nodes = [node("a", idle_since=1.0), node("b", idle_since=2.0)]
    plan = plan_dispatch([task("t1"), task("t2"), task("t3")], nodes)
    assert [(t.task_id, n.node_id) for t, n in plan] == [("t1", "a"), ("t2", "b")]


def test_plan_skips_only_tasks_no_idle_node_can_run():
    nodes = [node("cpu-node")]
    plan = plan_dispatch([task("g", queue="gpu"), task("c")], nodes)
    assert [(t.task_id, n.node_id) for t, n in plan] == [("c", "cpu-node")]


def test_affinity_does_not_starve_older_tasks():
    # One idle node warm for "sd"; the oldest task wants "lama": it still gets the node first.
    nodes = [node("warm", loaded="sd")]
    plan = plan_dispatch([task("old", name="lama"), task("young", name="sd")], nodes)
    assert [(t.task_id, n.node_id) for t, n in plan] == [("old", "warm")]


def test_cold_task_avoids_node_warm_for_a_later_task():
    nodes = [node("warm-sd", idle_since=0.0, loaded="sd"), node("other", idle_since=5.0, loaded="cv2")]
    plan = plan_dispatch([task("t1", name="lama"), task("t2", name="sd")], nodes)
    assert {t.task_id: n.node_id for t, n in plan} == {"t1": "other", "t2": "warm-sd"}


def test_an_empty_node_wins_over_a_warm_one_that_holds_a_task_already():
    task = WaitingTask("t", "inpaint", "lama", "gpu")
    warm_busy = IdleNode("warm", frozenset({"gpu"}), 1.0, loaded_model="lama", held=1)
    cold_empty = IdleNode("cold", frozenset({"gpu"}), 2.0, loaded_model=None)
    assert choose_node(task, [warm_busy, cold_empty]).node_id == "cold"
    deeper = IdleNode("deeper", frozenset({"gpu"}), 0.5, loaded_model="lama", held=2)
    assert choose_node(task, [warm_busy, deeper]).node_id == "warm"
