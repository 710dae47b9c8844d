"""Entry points the ``lama-cleaner`` dispatcher calls for ``node`` and ``scheduler``.

Imported lazily so that ``lama-cleaner node`` does not pay for the scheduler's imports and the
other way round.
"""

from __future__ import annotations

from collections.abc import Sequence


def node_main(argv: Sequence[str] | None = None) -> int:
    from .node.main import node_main as run

    return run(argv)


def scheduler_main(argv: Sequence[str] | None = None) -> int:
    from .scheduler.main import scheduler_main as run

    return int(run(argv) or 0)


__all__ = ["node_main", "scheduler_main"]
