"""The math libraries' threads in an inference process, so that nodes sharing a host do not fight over its cores.

Why: PyTorch's CPU kernels run on an OpenMP pool sized to the cores, in every process, and by default
an OpenMP thread that runs out of work spins for a while before it sleeps. One process on a host is
fine with that. Several nodes on one host are not: two nodes running a TorchScript model at once on a
2-core host kept four threads busy on two cores, and a request took 900 ms instead of 62 ms
(``bench_gpu.py --cpu-smoke``, a tiny model; ``benchmarks/bench_node_threads.py`` measures a real one).

Two remedies were measured side by side (``benchmarks/README.md``): dividing the cores among the nodes
(one thread each on 2 cores: what Ray and TorchServe do), and letting every node keep all its threads
but wait passively (``OMP_WAIT_POLICY=PASSIVE``: a thread without work sleeps at once). Both remove the
collapse under load (passive waiting measured 1.06x the divided nodes' throughput), and passive
waiting also keeps a lone request at full speed, where a divided node runs it on its share of the
cores (433-558 ms against 731-763 ms). So nodes started together on one host (the server's
``distributed.local_nodes`` when there are several, the autoscaler's ``local`` provider) get
``OMP_WAIT_POLICY=PASSIVE`` (:func:`shared_host_environment`) unless the operator's environment
names a policy already.

A thread count is imposed only when asked (:func:`threads_for`): ``distributed.node_threads`` /
``lama-cleaner node --threads N``, else the operator's ``OMP_NUM_THREADS``; otherwise the libraries
keep their defaults (PyTorch's is the physical cores). The inference process applies it
(:func:`limit_threads`) before it loads a model: the environment for the libraries it has not loaded
yet, PyTorch and OpenCV directly (OpenCV never reads the environment for it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""What OpenMP (PyTorch's CPU kernels), MKL and OpenBLAS read when they start their pools."""
WAIT_POLICY = "OMP_WAIT_POLICY"
"""OpenMP's standard switch between spinning (``ACTIVE``) and sleeping (``PASSIVE``) idle threads."""


def _positive(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value > 0 else None


def threads_for(configured: int, environ: Mapping[str, str]) -> int | None:
    """The threads of one inference process: ``configured`` if positive, else the operator's
    ``OMP_NUM_THREADS`` if a positive number, else None (the libraries' own defaults)."""
    if configured > 0:
        return int(configured)
    return _positive(environ.get("OMP_NUM_THREADS"))


def shared_host_environment(nodes: int, environ: Mapping[str, str]) -> dict[str, str]:
    """What to add to the environment of each of ``nodes`` nodes started together on this host:
    OpenMP threads that sleep as soon as they have no work, when there are several nodes and the
    operator's environment (``environ``, which they inherit) sets no wait policy, even an empty one."""
    if nodes > 1 and WAIT_POLICY not in environ:
        return {WAIT_POLICY: "PASSIVE"}
    return {}


def describe(threads: int | None, environ: Mapping[str, str]) -> str:
    """For a node's start-up line: its thread count and, when set, OpenMP's wait policy."""
    text = f"{threads} thread(s)" if threads else "the math libraries' default threads"
    policy = environ.get(WAIT_POLICY)
    return f"{text}, {WAIT_POLICY}={policy}" if policy else text


def limit_threads(threads: int, environ: MutableMapping[str, str] | None = None) -> None:
    """In an inference process, before any model is loaded: use ``threads`` threads from now on.

    The environment covers libraries that start later (PyTorch reads ``OMP_NUM_THREADS`` on import);
    one already imported is told directly, and OpenCV always is."""
    env = os.environ if environ is None else environ
    for name in COUNT_VARS:
        env[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    import cv2

    cv2.setNumThreads(threads)
