"""``local``: node subprocesses on this machine, the default provider and the last fallback.

Each instance is an ordinary ``python -m lama_cleaner node`` process, started with
``--exit-on-drain`` (so a drained node leaves by itself once its current task is done), with
``--parent-pid`` (so it dies with the process that started it, even on SIGKILL), and with the
labels that name its instance. Release never blocks the autoscaler: a released node that is still
running (a drained node is on its way out, and a Python process with its inference child takes a
few seconds to exit) gets ``exit_wait_s`` to leave by itself, then SIGTERM (it finishes its task and
says BYE) and, ``stop_grace_s`` later, SIGKILL; each evaluation's capacity query moves these along.
A released process counts against ``max_nodes`` until it has exited.

Unlike ``distributed.local_nodes`` (a fixed set the server keeps alive), nothing here restarts a
node: the policy decides how many there are.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ....cpu_threads import shared_host_environment
from ..labels import instance_labels, labels_argument
from .base import Capacity, LaunchedInstance, ProviderContext, ProviderError, ScalingProvider

log = logging.getLogger(__name__)


@dataclass
class LocalSettings:
    """``[autoscale.providers.local]``."""

    max_nodes: int = field(
        default=2, metadata={"help": "Most node processes on this machine, all queues together.", "minimum": 0}
    )
    device: str | None = field(
        default=None,
        metadata={
            "help": "`--device` of the nodes (cpu, cuda, cuda:N, mps); unset = the device of the config they get."
        },
    )
    exit_wait_s: float = field(
        default=30.0,
        metadata={
            "help": "Seconds a released node (drained, holding no task) gets to exit by itself before SIGTERM.",
            "minimum": 0,
        },
    )
    stop_grace_s: float = field(
        default=10.0,
        metadata={
            "help": "Seconds a node that is still running when released gets to finish its task before SIGKILL.",
            "minimum": 0,
        },
    )
    extra_args: list[str] = field(
        default_factory=list, metadata={"help": "More arguments for `lama-cleaner node` (e.g. `--models`, `lama`)."}
    )
    python: str | None = field(
        default=None, metadata={"help": "Interpreter that runs the nodes; unset = the one running the autoscaler."}
    )


@dataclass
class _Process:
    instance: LaunchedInstance
    proc: subprocess.Popen[bytes]
    started_at: float
    term_at: float | None = None
    """Set on release: when SIGTERM is sent if the process has not exited by then."""
    kill_at: float | None = None
    """Set once SIGTERM was sent: when SIGKILL follows."""


class LocalProvider(ScalingProvider):
    """Node subprocesses on this machine."""

    name = "local"
    settings_type = LocalSettings

    def __init__(self, settings: LocalSettings | None, context: ProviderContext) -> None:
        self.settings = settings or LocalSettings()
        self.context = context
        self._procs: dict[str, _Process] = {}
        self._exits: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ command line
    def command(self, queue: str, instance_id: str) -> list[str]:
        """The exact command line of one node for ``queue``."""
        s = self.settings
        cmd = [s.python or sys.executable, "-m", "lama_cleaner", "node"]
        cmd += ["--scheduler", self.context.scheduler, "--queues", queue, "--exit-on-drain"]
        cmd += ["--name", instance_id, "--labels", labels_argument(instance_labels(self.name, instance_id))]
        cmd += ["--parent-pid", str(os.getpid()), "--stop-grace", f"{s.stop_grace_s:g}"]
        if self.context.config_path:
            cmd += ["--config", self.context.config_path]
        if self.context.plugins:
            cmd += ["--plugins", ",".join(self.context.plugins)]
        if s.device:
            cmd += ["--device", s.device]
        return cmd + list(s.extra_args)

    # ------------------------------------------------------------------ provider
    def capacity(self, queue: str) -> Capacity:
        with self._lock:
            return Capacity(self.settings.max_nodes, len(self._reap()))

    def start(self, queue: str, count: int) -> list[LaunchedInstance]:
        started: list[LaunchedInstance] = []
        with self._lock:
            room = self.settings.max_nodes - len(self._reap())
            for _ in range(max(0, min(count, room))):
                instance_id = f"local-{uuid.uuid4().hex[:10]}"
                try:
                    # A session of its own, as for distributed.local_nodes: a signal to the server's process
                    # group must not stop the nodes under the autoscaler; release/close decide when they go.
                    proc = subprocess.Popen(
                        self.command(queue, instance_id),
                        env=self._env(),
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise ProviderError(f"cannot start a node process: {exc}", launched=started) from exc
                inst = LaunchedInstance(self.name, queue, instance_id, {"pid": proc.pid})
                self._procs[instance_id] = _Process(inst, proc, time.monotonic())
                started.append(inst)
                log.info("started local node %s for queue %s (pid %s)", instance_id, queue, proc.pid)
        return started

    def release(self, instances: Sequence[LaunchedInstance]) -> None:
        """Mark the processes released: they get ``exit_wait_s`` to exit by themselves (see the module doc)."""
        now = time.monotonic()
        with self._lock:
            for inst in instances:
                entry = self._procs.get(inst.instance_id or "")
                if entry is not None:
                    wait_until = now + self.settings.exit_wait_s
                    entry.term_at = wait_until if entry.term_at is None else min(entry.term_at, wait_until)
            self._reap()

    def forget(self, instances: Sequence[LaunchedInstance]) -> None:
        """An instance declared ended (vanished, never registered) whose process still runs is wedged
        or hopelessly slow: it is stopped too, so it neither holds a slot nor joins later."""
        self._stop(instances, graceful=False)

    def state(self) -> dict[str, Any]:
        with self._lock:
            running = self._reap()
            return {
                "max_nodes": self.settings.max_nodes,
                "running": [
                    {
                        "instance": p.instance.instance_id,
                        "queue": p.instance.queue,
                        "pid": p.proc.pid,
                        "released": p.term_at is not None,
                    }
                    for p in running
                ],
                "exited": list(self._exits[-20:]),
            }

    def close(self) -> None:
        with self._lock:
            instances = [p.instance for p in self._procs.values()]
        self._stop(instances, graceful=True)

    # ------------------------------------------------------------------ processes
    def pid_of(self, instance_id: str) -> int | None:
        with self._lock:
            entry = self._procs.get(instance_id)
            return entry.proc.pid if entry is not None else None

    def _env(self) -> dict[str, str]:
        """The environment of a node: this one, with this package first on the path (the node must
        run the same code as the autoscaler, also from a source checkout), and what nodes sharing a
        host need (:mod:`lama_cleaner.cpu_threads`)."""
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[4])
        env["PYTHONPATH"] = os.pathsep.join(x for x in (package_root, env.get("PYTHONPATH", "")) if x)
        # Several nodes on this machine, with the server's own: OpenMP threads that sleep when idle.
        return env | shared_host_environment(self.settings.max_nodes + self.context.host_nodes, os.environ)

    def _reap(self) -> list[_Process]:
        """The processes still running (the caller holds the lock); exited ones are recorded and dropped,
        released ones that overstay get SIGTERM, then SIGKILL."""
        alive = []
        now = time.monotonic()
        for instance_id, entry in list(self._procs.items()):
            code = entry.proc.poll()
            if code is None:
                alive.append(entry)
                if entry.kill_at is not None and now >= entry.kill_at:
                    log.warning(
                        "released local node %s (pid %s) ignored SIGTERM; killing it", instance_id, entry.proc.pid
                    )
                    entry.proc.kill()
                    entry.kill_at = now + 3600.0
                elif entry.kill_at is None and entry.term_at is not None and now >= entry.term_at:
                    log.info(
                        "released local node %s (pid %s) is still running; stopping it", instance_id, entry.proc.pid
                    )
                    entry.proc.terminate()
                    entry.kill_at = now + self.settings.stop_grace_s + 2.0
                continue
            del self._procs[instance_id]
            self._exits.append({"instance": instance_id, "pid": entry.proc.pid, "code": code})
            del self._exits[:-100]
        return alive

    def _stop(self, instances: Sequence[LaunchedInstance], *, graceful: bool) -> None:
        with self._lock:
            entries = [self._procs.pop(i.instance_id or "", None) for i in instances]
        procs = [e.proc for e in entries if e is not None]
        for proc in procs:
            if proc.poll() is None:
                if graceful:
                    proc.terminate()
                else:
                    proc.kill()
        deadline = time.monotonic() + (self.settings.stop_grace_s + 2.0 if graceful else 5.0)
        for proc in procs:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("local node pid %s did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait(5.0)
        with self._lock:
            for entry in entries:
                if entry is not None:
                    self._exits.append(
                        {"instance": entry.instance.instance_id, "pid": entry.proc.pid, "code": entry.proc.returncode}
                    )
            del self._exits[:-100]
