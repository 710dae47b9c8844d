"""Which queue a task goes to, which queues a node may join, and which idle node runs which task.

All pure: the scheduler gathers plain values (task kind/name, node capabilities, idle nodes) and
asks these functions. Nothing here touches sockets, SQLite or the clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ....errors import ClientError

ResourceClassOf = Callable[[str, str], "str | None"]
"""``(kind, name) -> "gpu" | "cpu" | None`` (None: no such model or image plugin)."""

GPU_QUEUE = "gpu"


class RoutingError(ClientError):
    """A task that no queue can take (unknown model/plugin, or a route to a queue not configured)."""

    code = "unknown_task"


def route_task(
    kind: str,
    name: str,
    *,
    resource_class_of: ResourceClassOf,
    rules: Mapping[str, str],
    queues: Sequence[str],
) -> str:
    """The queue of a task.

    ``rules`` (config ``routes``) come first: ``"<kind>:<name>"`` then ``"<name>"``. Otherwise the
    model's or plugin's resource class names the queue (erase and diffusion models are ``gpu``;
    ``cv2`` and CPU image plugins are ``cpu``); with a single queue configured, everything goes there.
    """
    if not queues:
        raise RoutingError("no queues are configured")
    for key in (f"{kind}:{name}", name):
        if key in rules:
            queue = rules[key]
            if queue not in queues:
                known = ", ".join(queues)
                raise RoutingError(f"route {key!r} -> {queue!r} names a queue that is not configured ({known})")
            return queue
    resource_class = resource_class_of(kind, name)
    if resource_class is None:
        what = "Model" if kind == "inpaint" else "Plugin"
        raise RoutingError(f"{what} not found: {name}", code="not_found" if kind == "plugin" else "unknown_model")
    if resource_class in queues:
        return resource_class
    if len(queues) == 1:
        return queues[0]
    raise RoutingError(
        f"no queue serves resource class {resource_class!r} of {kind} {name!r}; "
        f"add a `routes` entry (queues: {', '.join(queues)})"
    )


def _device_is_cuda(capabilities: Mapping[str, Any]) -> bool:
    device = str(capabilities.get("device") or "").lower()
    return device == "cuda" or device.startswith("cuda:")


def allowed_queues(
    capabilities: Mapping[str, Any], requested: Sequence[str] | None, config: Any
) -> tuple[set[str], dict[str, str]]:
    """Split the queues a node asked for into (allowed names, {rejected name: reason}).

    ``config`` is the ``DistributedConfig``. An empty request means "every queue I qualify for".
    The ``gpu`` queue needs a CUDA device unless ``config.gpu_queue_requires_gpu`` is False.
    """
    configured = list(config.queues)
    wanted = list(requested) if requested else configured
    allowed: set[str] = set()
    rejected: dict[str, str] = {}
    for queue in wanted:
        if not isinstance(queue, str) or queue not in configured:
            rejected[str(queue)] = f"unknown queue (this scheduler has: {', '.join(configured)})"
        elif queue == GPU_QUEUE and config.gpu_queue_requires_gpu and not _device_is_cuda(capabilities):
            device = capabilities.get("device") or "none"
            rejected[queue] = f"the gpu queue requires a CUDA device (this node has {device})"
        else:
            allowed.add(queue)
    return allowed, rejected


# ------------------------------------------------------------------ node selection
@dataclass(frozen=True)
class IdleNode:
    """An idle node as the selector sees it.

    ``queues``: queues on which it holds credit (sent READY). ``models``: model names it can run
    (None = it did not say, so any). ``idle_since``: when it became idle (for least recently used).
    ``held``: tasks it holds already (a node with several slots may get another while it works).
    """

    node_id: str
    queues: frozenset[str]
    idle_since: float
    loaded_model: str | None = None
    models: frozenset[str] | None = None
    plugins: frozenset[str] | None = None
    held: int = 0


@dataclass(frozen=True)
class WaitingTask:
    """A queued task that may run now (its retry delay has passed), in dispatch order (priority, then oldest first).

    ``avoid``: nodes an earlier attempt of the task failed on (a retryable failure such as CUDA out
    of memory may well happen again there); see :func:`preferred_nodes`.
    """

    task_id: str
    kind: str
    name: str
    queue: str
    labels: Mapping[str, str] = field(default_factory=dict)
    avoid: frozenset[str] = frozenset()


def node_can_run(node: IdleNode, task: WaitingTask) -> bool:
    """A node qualifies when it holds credit on the task's queue and can run its model/plugin."""
    if task.queue not in node.queues:
        return False
    if task.kind == "inpaint" and node.models is not None and task.name not in node.models:
        return False
    if task.kind == "plugin" and node.plugins is not None and task.name not in node.plugins:
        return False
    return True


def preferred_nodes(
    task: WaitingTask, candidates: Sequence[IdleNode], online: Sequence[IdleNode] = ()
) -> Sequence[IdleNode]:
    """Which of the idle ``candidates`` (nodes that can run ``task``) may get it now.

    A retry should not go back to a node it failed on while another node could run it: the nodes
    in ``task.avoid`` are skipped when another candidate is idle, and also while some other
    ``online`` node (``queues`` = the queues it was granted, draining ones left out) could run it
    once it is free, so the task waits for that node instead. Never starves: when only nodes it
    failed on can run it, they get it.
    """
    if not task.avoid:
        return candidates
    fresh = [n for n in candidates if n.node_id not in task.avoid]
    if fresh:
        return fresh
    if any(n.node_id not in task.avoid and node_can_run(n, task) for n in online):
        return []
    return candidates


def choose_node(
    task: WaitingTask,
    idle: Sequence[IdleNode],
    wanted_later: Mapping[str, int] | None = None,
    online: Sequence[IdleNode] = (),
) -> IdleNode | None:
    """The node for ``task``: one with its model loaded (affinity), else the least recently used.

    Among nodes without the model, those whose loaded model no later waiting task wants are
    preferred, so a node warm for the next task is not spent on a cold one. Nodes the task failed
    on come last, as :func:`preferred_nodes` says (``online``: see there). Before all that, only the
    nodes holding the fewest tasks are considered: a node with a free slot but work in hand (protocol
    "slots") never takes a task an empty node could start now, so depth adds overlap, not queueing.
    """
    candidates = preferred_nodes(task, [n for n in idle if node_can_run(n, task)], online)
    if not candidates:
        return None
    fewest = min(n.held for n in candidates)
    if fewest:
        candidates = [n for n in candidates if n.held == fewest]
    elif any(n.held for n in candidates):
        candidates = [n for n in candidates if not n.held]
    if task.kind == "inpaint":
        warm = [n for n in candidates if n.loaded_model == task.name]
        if warm:
            return min(warm, key=lambda n: (n.idle_since, n.node_id))
    later = wanted_later or {}

    def cost(n: IdleNode) -> tuple[int, float, str]:
        keeps_warm_for_other = 1 if n.loaded_model and later.get(n.loaded_model, 0) > 0 else 0
        return (keeps_warm_for_other, n.idle_since, n.node_id)

    return min(candidates, key=cost)


def plan_dispatch(
    waiting: Sequence[WaitingTask], idle: Sequence[IdleNode], online: Sequence[IdleNode] = ()
) -> list[tuple[WaitingTask, IdleNode]]:
    """Pair waiting tasks (in dispatch order: priority, then oldest first) with idle nodes, one task per node.

    FIFO over tasks: a task is only passed over when no idle node can run it (or, for a retry, only
    nodes it failed on are idle while another ``online`` node could run it, see
    :func:`preferred_nodes`), so no task starves behind younger ones that share its nodes; affinity
    only decides *which* node each task gets.
    """
    free = list(idle)
    later = Counter(t.name for t in waiting if t.kind == "inpaint")
    plan: list[tuple[WaitingTask, IdleNode]] = []
    for task in waiting:
        if not free:
            break
        if task.kind == "inpaint":
            later[task.name] -= 1
        node = choose_node(task, free, later, online)
        if node is None:
            continue
        plan.append((task, node))
        free.remove(node)
    return plan


# ------------------------------------------------------------------ tasks nobody can run
def _count_nodes(n: int) -> str:
    if n == 0:
        return "no nodes online"
    return f"{n} node{'s' if n != 1 else ''} online"


def task_label(kind: str, name: str) -> str:
    """``model 'lama'`` / ``plugin 'RemoveBG'``: how messages name what a task runs."""
    return f"{'model' if kind == 'inpaint' else 'plugin'} {name!r}"


def unschedulable_reason(task: WaitingTask, online: Sequence[IdleNode], draining: Collection[str] = ()) -> str | None:
    """None when some online node could run ``task`` (the dispatch predicate, with ``queues`` = the
    queues a node was granted, not just those it holds credit on); else why none can.

    ``online``: every online node (draining ones included, named in ``draining``), so the message can
    say how many there are and which condition ruled them out, e.g. ``no online node can run model
    'lama' on queue 'gpu' (2 nodes online, none joined 'gpu')``.
    """
    joined = [n for n in online if task.queue in n.queues]
    capable = [n for n in joined if node_can_run(n, task)]
    usable = [n for n in capable if n.node_id not in draining]
    if usable:
        return None
    what = task_label(task.kind, task.name)
    if not online:
        why = _count_nodes(0)
    elif not joined:
        why = f"{_count_nodes(len(online))}, none joined {task.queue!r}"
    elif not capable:
        why = f"{_count_nodes(len(online))}, none of the {len(joined)} that joined {task.queue!r} has {what}"
    else:
        why = f"{_count_nodes(len(online))}, the {len(capable)} that could are draining"
    return f"no online node can run {what} on queue {task.queue!r} ({why})"
