"""Which plugins the distributed plugin's own processes (scheduler, node, inference child) register.

The same rule for each of them, in one place: ``distributed`` itself, then the deployment's plugins.
It is an ordinary plugin there, as in the web server: registering it starts nothing (its hooks act
only when called), and it declares the hooks it publishes (``node_labels``, ``scheduler_started``,
...), so the plugins loaded beside it can implement them without ``optionalhook``.
"""

from __future__ import annotations

from collections.abc import Sequence


def process_plugins(*lists: Sequence[str]) -> list[str]:
    """``distributed`` first, then the names of ``lists`` (config, ``--plugins``), each once, in order."""
    names = ("distributed", *(name for names in lists for name in names))
    return list(dict.fromkeys(name.strip() for name in names if name and name.strip()))
