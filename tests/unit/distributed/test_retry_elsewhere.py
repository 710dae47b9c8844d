"""A retry prefers a node other than the ones it failed on (routing.preferred_nodes and the dispatch
plan), and the bounded memories behind it and behind drains (node_registry)."""

from __future__ import annotations

from lama_cleaner.plugins.distributed.scheduler.node_registry import DrainedNodes, FailedOn
from lama_cleaner.plugins.distributed.scheduler.routing import (
    IdleNode,
    WaitingTask,
    choose_node,
    plan_dispatch,
    preferred_nodes,
)

CPU = frozenset({"cpu"})


def node(node_id: str, idle_since: float = 0.0, *, queues: frozenset[str] = CPU, models=None) -> IdleNode:
    return IdleNode(node_id, queues, idle_since, models=frozenset(models) if models else None)


def task(task_id: str = "t", *, avoid: tuple[str, ...] = (), name: str = "cv2") -> WaitingTask:
    return WaitingTask(task_id, "inpaint", name, "cpu", avoid=frozenset(avoid))


def test_a_task_without_failures_may_go_to_any_candidate():
    a, b = node("a"), node("b")
    assert list(preferred_nodes(task(), [a, b], [a, b])) == [a, b]


def test_the_node_a_task_failed_on_is_skipped_when_another_is_idle():
    a, b = node("a", idle_since=1.0), node("b", idle_since=5.0)
    assert list(preferred_nodes(task(avoid=("a",)), [a, b], [a, b])) == [b]
    # Least recently used alone would pick a.
    assert choose_node(task(), [a, b]) == a
    assert choose_node(task(avoid=("a",)), [a, b], online=[a, b]) == b


def test_the_retry_waits_for_a_busy_node_that_could_run_it():
    a, busy_b = node("a"), node("b")
    assert list(preferred_nodes(task(avoid=("a",)), [a], [a, busy_b])) == []
    assert choose_node(task(avoid=("a",)), [a], online=[a, busy_b]) is None


def test_never_starves_when_only_failed_nodes_can_run_it():
    a, b = node("a"), node("b")
    # b is online but cannot run the model: it does not count.
    other = node("c", models=["lama"])
    assert list(preferred_nodes(task(avoid=("a",)), [a], [a, other])) == [a]
    # Failed everywhere: any of them.
    assert list(preferred_nodes(task(avoid=("a", "b")), [a, b], [a, b])) == [a, b]
    # No other online node at all (or none given).
    assert list(preferred_nodes(task(avoid=("a",)), [a], [a])) == [a]
    assert list(preferred_nodes(task(avoid=("a",)), [a])) == [a]


def test_an_online_node_of_another_queue_does_not_make_the_retry_wait():
    a = node("a")
    gpu_only = node("g", queues=frozenset({"gpu"}))
    assert list(preferred_nodes(task(avoid=("a",)), [a], [a, gpu_only])) == [a]


def test_the_plan_gives_the_failed_node_younger_work_while_the_retry_waits_for_another():
    a, busy_b = node("a"), node("b")
    retry, fresh = task("old", avoid=("a",)), task("young")
    assert plan_dispatch([retry, fresh], [a], online=[a, busy_b]) == [(fresh, a)]
    # Once b is idle too, the retry (oldest) goes to b and the young task to a.
    idle_b = node("b", idle_since=9.0)
    assert sorted((t.task_id, n.node_id) for t, n in plan_dispatch([retry, fresh], [a, idle_b], [a, idle_b])) == [
        ("old", "b"),
        ("young", "a"),
    ]


def test_failed_on_accumulates_nodes_and_forgets_finished_tasks_beyond_its_limit():
    memory = FailedOn(limit=2)
    assert not memory and memory.get("t1") == frozenset()
    memory.add("t1", "a")
    memory.add("t1", "b")
    assert memory.get("t1") == {"a", "b"}
    memory.add("t2", "a", live={"t1", "t2"})
    memory.add("t3", "a", live={"t1", "t3"})  # over the limit: t2 is finished, so it goes first
    assert memory.get("t2") == frozenset() and memory.get("t1") == {"a", "b"} and memory.get("t3") == {"a"}
    memory.add("t4", "a", live={"t1", "t3", "t4"})  # all live: the oldest goes
    assert len(memory) == 2 and memory.get("t1") == frozenset()
    memory.discard("t3")
    assert memory.get("t3") == frozenset()


def test_drained_nodes_is_bounded_and_forgets_on_request():
    memory = DrainedNodes(limit=2)
    memory.add("a")
    memory.add("b")
    memory.add("a")  # refreshed: b is now the oldest
    memory.add("c")
    assert "a" in memory and "c" in memory and "b" not in memory and len(memory) == 2
    memory.discard("a")
    memory.discard("missing")
    assert "a" not in memory
