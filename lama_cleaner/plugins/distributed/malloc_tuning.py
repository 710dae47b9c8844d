"""glibc malloc settings for the distributed processes, so image-sized buffers are reused, not re-faulted.

Why: a cv2 ``/inpaint`` of a 512x512 PNG allocates a dozen image-sized temporaries (0.8-3 MB each:
decoded planes, the float32 blend, the encoder's buffers). In the node's inference child these are
served from the main arena, whose default dynamic thresholds hand the freed memory back to the OS
after every task, so the next task faults every page in again (measured: ~4,400 minor page faults
and 6-7 ms of a ~90 ms task; the same call in the classic web server's request thread: 0 faults).
The node's main process and a standalone scheduler do the same with every 1 MB message they
receive. With a fixed ``M_MMAP_THRESHOLD`` of 32 MiB (glibc's maximum on 64-bit) such buffers
come from the heap, and a 256 MiB ``M_TRIM_THRESHOLD`` keeps freed heap for the next task: 0
faults, and the task runs as fast as in classic mode. The price is that an idle process keeps up
to its last task's working set (bounded by the trim threshold) instead of shrinking; these are
dedicated workers that need that memory again for the next task anyway.

Both settings are applied to the running process with ``mallopt(3)`` and put into the environment
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), which glibc reads when a process starts,
so the node's inference child (spawned afterwards) gets them too. Other C libraries have neither
and are left alone. A variable the operator already set wins (the process started with it), and
``LAMA_CLEANER_MALLOC_TUNING=0`` turns all of this off.

A web server in distributed mode applies them too (``DistributedExecutor``): it runs no model, but
every image passes through it several times (the upload, the SUBMIT into the embedded scheduler,
the TASK out, the RESULT in, the DONE to the waiting request), and without them each copy of a
1920x1080 PNG faulted its pages in again: ~1,800 more minor faults per request than the classic
server, and 4-5 ms of the latency distributed mode added at concurrency 1 (17.5 -> 12.9 ms,
measured inside the server). A classic server is left alone: there the thresholds saved nothing
measurable and its request threads' arenas kept 2.5x the memory (283 -> 693 MiB after eight
concurrent 1080p requests).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable, MutableMapping

MiB = 1024 * 1024
DISABLE_ENV = "LAMA_CLEANER_MALLOC_TUNING"
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
SETTINGS = (
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, 32 * MiB),
    ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, 256 * MiB),
)
"""(environment variable, mallopt parameter, value). Both are needed: setting any of them turns
glibc's dynamic threshold adjustment off (``mallopt(3)``), so a trim threshold alone sends every
buffer over 128 KiB to ``mmap`` and faults even more."""


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """``mallopt`` of the C library this process runs on, when that is glibc."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).mallopt  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # pragma: no cover - glibc always has it
        return None


def tune_malloc(
    environ: MutableMapping[str, str] | None = None,
    mallopt: Callable[[int, int], int] | None = None,
) -> dict[str, str]:
    """Apply :data:`SETTINGS` that the operator did not set: to this process (``mallopt``) and
    to ``environ`` (default ``os.environ``) for the processes it starts later.

    Returns the variables it set; empty when disabled, when every one was already set, or when
    the C library is not glibc. ``mallopt`` is injectable for tests.
    """
    env = os.environ if environ is None else environ
    if env.get(DISABLE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return {}
    call = mallopt if mallopt is not None else _glibc_mallopt()
    if call is None:
        return {}
    added: dict[str, str] = {}
    for name, param, value in SETTINGS:
        if name in env:
            continue
        call(param, value)
        env[name] = str(value)
        added[name] = str(value)
    return added
