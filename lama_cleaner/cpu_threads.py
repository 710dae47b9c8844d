"""How many threads the math libraries of one inference process use, so processes sharing a host share its cores.

Why: PyTorch (OpenMP), MKL and OpenBLAS each size their thread pool to every core of the machine, in
every process, and OpenMP's threads spin while they wait. One server running its model in one
process is fine with that. Several nodes on one host are not: each node's inference process starts a
pool of its own, so two nodes running a TorchScript model at once on a 2-core host ran four spinning
threads on two cores and took 900 ms a request instead of 62 ms with one thread each (a tiny model,
``benchmarks/bench_node_threads.py`` measures a real one). Ray gives each worker one thread unless
told otherwise and TorchServe divides the cores among its workers, for the same reason.

Who decides, in order (:func:`threads_for`): the node's own setting (``distributed.node_threads``,
``lama-cleaner node --threads N``); else ``OMP_NUM_THREADS`` if the operator exported it; else nobody,
and the libraries keep their own defaults (PyTorch's is the physical cores, which a count of logical
ones would exceed on a machine with hyper-threads), as a lone node on its host should. Whoever starts
several nodes on one host (the server's ``distributed.local_nodes``, the autoscaler's ``local``
provider) gives each its share of the cores (:func:`share_for`) unless the operator decided already.
The inference process applies a number (:func:`limit_threads`) before it loads a model: the
environment for the libraries it has not loaded yet, PyTorch and OpenCV directly (OpenCV never reads
the environment for it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""What OpenMP (PyTorch's CPU kernels), MKL and OpenBLAS read when they start their pools."""


def host_cpus() -> int:
    """Cores this process may run on: its CPU affinity (a container's cpuset) where the OS tells, else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _positive(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value > 0 else None


def operator_threads(environ: Mapping[str, str]) -> int | None:
    """``OMP_NUM_THREADS`` when the operator set it to a positive number, else None."""
    return _positive(environ.get("OMP_NUM_THREADS"))


def threads_for(configured: int, environ: Mapping[str, str]) -> int | None:
    """The threads of one inference process: ``configured`` if positive, else the operator's
    ``OMP_NUM_THREADS``, else None (the libraries' own defaults)."""
    if configured > 0:
        return int(configured)
    return operator_threads(environ)


def share_for(nodes: int, configured: int, environ: Mapping[str, str], cpus: int | None = None) -> int | None:
    """The ``--threads`` for each of ``nodes`` nodes started together on this host: an equal share of
    the cores (at least 1). None when the nodes' own resolution is what the operator asked for (a
    configured ``node_threads``, or ``OMP_NUM_THREADS`` in the environment they inherit)."""
    if configured > 0 or operator_threads(environ):
        return None
    total = cpus if cpus is not None else host_cpus()
    return max(1, total // max(1, nodes))


def limit_threads(threads: int, environ: MutableMapping[str, str] | None = None) -> None:
    """In an inference process, before any model is loaded: use ``threads`` threads from now on.

    The environment covers libraries that start later (PyTorch reads ``OMP_NUM_THREADS`` on import);
    one already imported is told directly, and OpenCV always is."""
    env = os.environ if environ is None else environ
    for name in ENV_VARS:
        env[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    import cv2

    cv2.setNumThreads(threads)
