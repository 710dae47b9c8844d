"""Test plugin: records every hook the distributed plugin fires in the scheduler's process, and answers
two ``scheduler_call`` names.

In the test's own process the calls are in :data:`calls` (``(hook, arguments)``, in arrival order per
hook). In a subprocess (``lama-cleaner scheduler --plugins tests.support.scheduler_hooks_recorder``)
they are also appended as JSON lines to the file named by ``LAMA_TEST_HOOK_LOG``.

``node_event`` waits while :data:`hold` is set (an in-process test's way to make it slow), and raises
for a node named ``raise-me`` (a raising observer must be logged and change nothing).
``scheduler_call``: ``test.echo`` answers ``{"echo": payload}``, ``test.boom`` raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Any

from lama_cleaner.plugins.hookspecs import hookimpl

calls: list[tuple[str, Any]] = []
entered: list[str] = []
"""``node_event`` kinds as each call began (before any wait or raise)."""
hold = threading.Event()
"""Set: ``node_event`` blocks until it is cleared (or 60 s pass)."""
_released = threading.Event()
_lock = threading.Lock()


def release() -> None:
    hold.clear()
    _released.set()


def reset() -> None:
    with _lock:
        calls.clear()
        entered.clear()
    hold.clear()
    _released.clear()


def named(hook: str) -> list[Any]:
    with _lock:
        return [args for name, args in calls if name == hook]


def _record(hook: str, args: Any, line: dict[str, Any]) -> None:
    with _lock:
        calls.append((hook, args))
    path = os.environ.get("LAMA_TEST_HOOK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"hook": hook, **line}, default=str) + "\n")


@hookimpl
def scheduler_started(scheduler, config):
    _record("scheduler_started", (scheduler, config), {"local": scheduler.local, "stats": _stats(scheduler)})


@hookimpl
def scheduler_stopped(scheduler, config):
    _record("scheduler_stopped", (scheduler, config), {"local": scheduler.local})


@hookimpl
def node_event(event):
    with _lock:
        entered.append(event.kind)
    if hold.is_set():
        _released.wait(60)
    if event.node.name == "raise-me":
        raise RuntimeError(f"observer refuses {event.kind}")
    _record("node_event", event, {"kind": event.kind, "node": dataclasses.asdict(event.node), "time": event.time})


@hookimpl
def task_unschedulable(task_id, queue, kind, name, reason):
    args = {"task_id": task_id, "queue": queue, "kind": kind, "name": name, "reason": reason}
    _record("task_unschedulable", args, args)


@hookimpl
def task_event(event):
    _record("task_event", event, dataclasses.asdict(event))


@hookimpl
def scheduler_call(name, payload):
    if name == "test.echo":
        return {"echo": payload, "pid": os.getpid(), "thread": threading.current_thread().name}
    if name == "test.boom":
        raise ValueError("boom on purpose")
    return None


def _stats(scheduler: Any) -> dict[str, Any]:
    stats = scheduler.stats()
    return {"queues": sorted(stats.queues), "counters": sorted(stats.counters)}
