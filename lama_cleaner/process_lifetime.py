"""Tie a child process's life to its parent's, so that no worker or server outlives who started it.

Linux only (``prctl(PR_SET_PDEATHSIG)``): the kernel signals the process when its parent dies, even
by SIGKILL, which no clean-up code in the parent could handle. Elsewhere this is a no-op and the
callers' own checks (the node polls its parent's pid) remain the safety net.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """Ask Linux to send ``sig`` to the calling process when its parent dies; best effort.

    Call it in the child: first thing in a ``multiprocessing`` target, or as ``preexec_fn`` of
    ``subprocess.Popen``. The request only covers a death that comes after it: a parent that died
    while the child was still starting (a spawned Python child takes a good fraction of a second
    to reach its target) leaves an orphan that would go on, loading a model for nobody. Given the
    pid of the parent that started it, the child checks afterwards that this parent is still its
    parent, and sends itself ``sig`` at once if not.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
