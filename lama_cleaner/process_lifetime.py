"""Tie a child process's life to its parent's, so that no worker or server outlives who started it.

Linux only (``prctl(PR_SET_PDEATHSIG)``): the kernel signals the process when its parent dies, even
by SIGKILL, which no clean-up code in the parent could handle. Elsewhere this is a no-op and the
callers' own checks (the node polls its parent's pid) remain the safety net.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to the calling process when its parent dies; best effort.

    Call it in the child: first thing in a ``multiprocessing`` target, or as ``preexec_fn`` of
    ``subprocess.Popen``.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass
