"""The ``lama-cleaner node``, ``lama-cleaner scheduler`` and ``lama-cleaner keys`` commands, registered by the plugin's
``register_commands`` hook whether or not ``--plugins distributed`` is given.

Each ``main`` imports its process's machinery only when run, so that ``lama-cleaner node`` does not
pay for the scheduler's imports (and the other way round), and collecting the commands costs
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...command import Command


def node_main(argv: Sequence[str] | None = None) -> int:
    from .node.main import node_main as run

    return run(argv)


def scheduler_main(argv: Sequence[str] | None = None) -> int:
    from .scheduler.main import scheduler_main as run

    return int(run(argv) or 0)


def keys_main(argv: Sequence[str] | None = None) -> int:
    from .security.keys_command import keys_main as run

    return run(argv)


COMMANDS = (
    Command("node", "run a worker node that pulls tasks from a scheduler (distributed plugin)", node_main),
    Command("scheduler", "run the task scheduler as its own process (distributed plugin)", scheduler_main),
    Command("keys", "generate or show CURVE keys of the scheduler and its peers (distributed plugin)", keys_main),
)
"""What the plugin's ``register_commands`` hook returns."""

__all__ = ["COMMANDS", "keys_main", "node_main", "scheduler_main"]
