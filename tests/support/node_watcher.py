"""Test plugin implementing hooks the ``distributed`` plugin publishes (``node_event``,
``task_unschedulable``): it loads beside that plugin, and is refused without it."""

from __future__ import annotations

from lama_cleaner.plugins.hookspecs import hookimpl

seen: list[object] = []


@hookimpl
def node_event(event):
    seen.append(event)


@hookimpl
def task_unschedulable(task_id, reason):
    seen.append((task_id, reason))
