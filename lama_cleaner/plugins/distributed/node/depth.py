"""How many tasks a node holds at once (its pipeline depth), derived from the machine by default.

A node with depth N runs up to N tasks in its inference process at once: while the model works on
one, the others are decoded and prepared, or their results encoded, on other cores. The model call
itself stays exclusive per device (``ModelManager(exclusive=True)``), so the depth never runs two
model calls side by side; it only hides the image stages behind the model.

The default (``distributed.node_pipeline_depth = 0``) follows the device. On the CPU the model and
the image stages compete for the same cores, so overlapping them buys nothing and a second task
would only wait on the node instead of in the queue, where another node could take it: depth 1.
On a GPU (or MPS) the model call leaves the cores free, so one task being decoded or encoded beside
the one on the device keeps the device busy: depth 2, and 3 from 8 cores on (decode and encode of
large images are then spread over more cores while the device works).
"""

from __future__ import annotations

import os

MAX_DEPTH = 16
"""The deepest pipeline a node will run (the scheduler caps ``slots`` at the same value)."""


def default_depth(device: str, cpus: int | None = None) -> int:
    """The depth a node on ``device`` with ``cpus`` cores uses when none is configured."""
    if device == "cpu" or not device:
        return 1
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return 3 if cores >= 8 else 2


def pipeline_depth(configured: int, device: str, cpus: int | None = None) -> int:
    """The depth a node uses: ``configured`` (1..``MAX_DEPTH``) or, when 0, :func:`default_depth`."""
    if configured and configured > 0:
        return min(int(configured), MAX_DEPTH)
    return default_depth(device, cpus)
