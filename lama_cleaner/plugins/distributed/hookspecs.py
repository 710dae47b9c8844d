"""Hooks the ``distributed`` plugin publishes (through ``add_hookspecs``) for other plugins.

Like pytest-xdist's ``newhooks``: the core never learns these names. They exist in a process once
the distributed plugin is registered there (the web server with ``--plugins distributed``, and the
scheduler and node processes), so a plugin implementing them must be loaded beside it; one that
should also load without it marks its implementations ``hookimpl(optionalhook=True)``. Each hook is
documented in ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookspec

if TYPE_CHECKING:
    from ...config import Config


@hookspec
def scheduler_started(scheduler: Any, config: Config) -> None:
    """Called once a scheduler (embedded or standalone) accepts work; ``scheduler`` is its ``SchedulerHandle``."""


@hookspec
def scheduler_stopped(scheduler: Any, config: Config) -> None:
    """Called once a scheduler has stopped and closed its journal; ``scheduler`` is its ``SchedulerHandle``."""


@hookspec
def node_event(event: Any) -> None:
    """Observe a node joining, going idle or busy, draining, going offline or leaving (a ``NodeEvent``)."""


@hookspec
def task_unschedulable(task_id: str, queue: str, kind: str, name: str, reason: str) -> None:
    """Observe a queued task that no online node can run, with the reason the scheduler gives."""


@hookspec(firstresult=True)
def scheduler_call(name: str, payload: dict[str, Any], config: Config) -> dict[str, Any] | None:
    """Answer the ``SchedulerHandle.call`` named ``name`` (a dict) if this plugin owns it, else return None."""


@hookspec
def node_labels(config: Config) -> dict[str, str]:
    """Return extra ``key=value`` labels this node advertises to the scheduler (merged over ``--labels``)."""
