"""The node's handle on one inference child process: start it, stop it without blocking the poll loop.

Why a module of its own: the agent (:mod:`.agent`) decides *when* a child is started, recycled or
killed; this class only knows *how* (a Pipe, a cancel Event, SIGTERM then SIGKILL after a grace), so
the agent's loop reads as decisions. The child's side of the Pipe is :mod:`.inference`.
"""

from __future__ import annotations

import time
from typing import Any

from .child_pipe import ChildPipe
from .inference import worker_main

KILL_GRACE_S = 0.5
"""How long a terminated child may take to exit before it is killed."""
RETIRE_GRACE_S = 10.0
"""How long a recycled inference child may take to exit after ``("stop",)`` before it is killed."""


class InferenceChild:
    """One inference child process and its Pipe; stopping it never blocks the poll loop."""

    def __init__(
        self,
        ctx: Any,
        config: Any,
        plugins: list[str],
        device: str,
        preload: str | None = None,
        depth: int = 1,
        *,
        shared: dict[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        conn, child_conn = ctx.Pipe()
        self.cancel_event = ctx.Event()
        self.depth = depth
        """Tasks it runs at once; above 1 a CANCEL is a Pipe message naming the task (see :mod:`.inference`)."""
        self.proc = ctx.Process(
            target=worker_main,
            args=(child_conn, self.cancel_event, config, plugins, device, preload, depth, shared, threads),
            name="lama-cleaner-inference",
            daemon=True,
        )
        self.proc.start()
        child_conn.close()
        self.pipe = ChildPipe(conn)
        self.ready = False
        self.shared = False
        """It mapped the node's shared memory (its "ready" says so): it reads files and writes results there."""
        self.tasks_done = 0
        """Tasks this process finished (for ``node_max_tasks_per_child``)."""
        self.recycle_reason: str | None = None
        """Why it is to be replaced once it holds no task (a pipelined child is recycled only empty)."""
        self.kill_deadline: float | None = None
        self.cancel_set = False
        """Whether ``cancel_event`` may be set: clearing it takes the Event's lock and semaphore, so
        it is cleared before the next task only after a CANCEL actually set it."""

    def cancel(self, task_id: str) -> None:
        """Ask the model running ``task_id`` to stop at its next step."""
        if self.depth == 1:
            self.cancel_event.set()
            self.cancel_set = True
            return
        try:
            self.pipe.send(("cancel", task_id))
        except (OSError, ValueError):
            pass  # the child is going away; the agent sees it die

    def before_task(self) -> None:
        """Clear a cancel left over from the previous task (depth 1: one shared Event)."""
        if self.cancel_set:
            self.cancel_event.clear()
            self.cancel_set = False

    def terminate(self) -> None:
        """SIGTERM now; :meth:`reap` escalates to SIGKILL after the grace period."""
        if self.kill_deadline is None:
            self.kill_deadline = time.monotonic() + KILL_GRACE_S
            try:
                self.proc.terminate()
            except (OSError, AttributeError):
                pass

    def retire(self) -> None:
        """Ask an idle child to exit (it frees its memory); :meth:`reap` kills it after the grace."""
        if self.kill_deadline is None:
            self.kill_deadline = time.monotonic() + RETIRE_GRACE_S
            try:
                self.pipe.send(("stop",))
            except (OSError, ValueError):  # its Pipe is gone already: stop it the hard way
                self.kill_deadline = None
                self.terminate()

    def reap(self) -> bool:
        """True once the process is gone (escalating to SIGKILL when the grace has passed)."""
        if not self.proc.is_alive():
            self.proc.join(0)
            self.close_pipe()
            return True
        if self.kill_deadline is not None and time.monotonic() > self.kill_deadline:
            try:
                self.proc.kill()
            except (OSError, AttributeError):
                pass
            self.kill_deadline = time.monotonic() + KILL_GRACE_S
        return False

    def close_pipe(self) -> None:
        self.pipe.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Blocking stop used at exit: ask politely, then terminate, then kill."""
        try:
            self.pipe.send(("stop",))
        except (OSError, ValueError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(KILL_GRACE_S)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(KILL_GRACE_S)
        self.close_pipe()
