"""Node subprocesses the web server starts for itself (``distributed.local_nodes``).

Each is an ordinary ``python -m lama_cleaner node ...`` process, visible in ``ps`` and killable like
any other node, started with ``--parent-pid`` so it exits when the server dies, even by SIGKILL. A
supervisor thread restarts a node that exits, with exponential backoff so a node that cannot start
does not spin, and ``stop()`` terminates them all at shutdown (SIGTERM, then SIGKILL). Each runs in a
session of its own, so only the server decides when its nodes stop.

The nodes receive the server's effective configuration as a JSON file (heartbeat intervals,
reconnect bounds, model settings), so what the operator configured applies to them too. When there are
several, their OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, unless the operator set a
policy), so nodes running a CPU model at once do not spin on each other's cores
(:mod:`lama_cleaner.cpu_threads`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ....cpu_threads import shared_host_environment
from ....errors import LamaCleanerError
from ..wire.liveness import Backoff

log = logging.getLogger(__name__)

_STABLE_S = 30.0
"""A node that ran this long before exiting restarts without accumulated backoff."""
_STOP_GRACE_S = 5.0


@dataclass
class _Slot:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0
    backoff: Backoff | None = None


class LocalNodeSupervisor:
    """Starts ``config.distributed.local_nodes`` nodes against ``endpoint`` and keeps them alive."""

    def __init__(self, config: Any, endpoint: str, *, count: int | None = None, check_interval_s: float = 0.2) -> None:
        dist = config.distributed
        self.config = config
        self.endpoint = endpoint
        self.count = int(dist.local_nodes if count is None else count)
        self.check_interval_s = check_interval_s
        self._slots = [
            _Slot(f"local-{i + 1}", backoff=Backoff(max(0.5, dist.reconnect_min_s), max(5.0, dist.reconnect_max_s)))
            for i in range(self.count)
        ]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="lama-cleaner-nodes-")
        self.config_path = Path(self._tmpdir.name) / "node-config.json"

    # ------------------------------------------------------------------ command line
    @property
    def device(self) -> str:
        """``distributed.local_node_device`` if set, else the server's ``--device``: a GPU server's
        local node must be a CUDA node, or nothing joins the ``gpu`` queue lama is routed to."""
        return self.config.distributed.local_node_device or self.config.device

    def command(self, name: str) -> list[str]:
        """The exact command line of one local node."""
        dist = self.config.distributed
        plugins = self._node_plugins()
        cmd = [
            sys.executable,
            "-m",
            "lama_cleaner",
            "node",
            "--scheduler",
            self.endpoint,
            "--name",
            name,
            "--parent-pid",
            str(os.getpid()),
            "--device",
            self.device,
            "--config",
            str(self.config_path),
            "--stop-grace",
            "1",
        ]
        if plugins:
            cmd += ["--plugins", ",".join(plugins)]
        if dist.local_node_queues:
            cmd += ["--queues", ",".join(dist.local_node_queues)]
        return cmd

    def environment(self) -> dict[str, str]:
        """This process's environment, plus what nodes sharing this host need (:mod:`lama_cleaner.cpu_threads`)."""
        return dict(os.environ) | shared_host_environment(self.count, os.environ)

    def _node_plugins(self) -> list[str]:
        """The server's plugins, ``distributed`` included: a node registers the same plugins as the
        server (their models, tools, lifecycle and ``node_labels``; see ``roles.process_plugins``)."""
        return [x for x in self.config.plugins if x]

    def _write_config(self) -> None:
        data = self.config.to_dict()
        data.pop("server", None)  # the web server's own settings, API token secrets included: no node needs them
        dist = self.config.distributed
        if dist.curve_secret_key and not dist.curve_server_key:
            # An embedded CURVE scheduler: the nodes use its key pair (always allowed) and verify it.
            from ..security.key_files import load_secret

            data["distributed"]["curve_server_key"] = load_secret(dist.curve_secret_key).public.decode("ascii")
        data["plugins"] = self._node_plugins()
        data["device"] = self.device
        self.config_path.write_text(json.dumps(data, indent=1, default=str))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.count <= 0:
            return
        self._write_config()
        with self._lock:
            for slot in self._slots:
                self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="lama-local-nodes", daemon=True)
        self._thread.start()

    def pids(self) -> list[int]:
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.poll() is None]

    def any_exited(self) -> bool:
        """True once a local node has exited since it was started (a restart pending or done)."""
        with self._lock:
            return any(s.restarts or s.proc is None or s.proc.poll() is not None for s in self._slots)

    def _spawn(self, slot: _Slot) -> None:
        cmd = self.command(slot.name)
        env = self.environment()
        cwd = os.getcwd()
        env["PYTHONPATH"] = os.pathsep.join(x for x in (cwd, env.get("PYTHONPATH", "")) if x)
        # A session of its own: a signal sent to the server's process group (a script's or a process
        # supervisor's kill of the group, Ctrl+C in a terminal) reaches the server only, which stops its
        # nodes itself (``stop``): after draining its requests on them (SIGTERM), or at once (SIGINT).
        # Sharing the group, the nodes left at once, were restarted by this supervisor while the server
        # drained, and were stopped again.
        slot.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True)
        slot.started_at = time.monotonic()
        log.info("started local node %s (pid %s)", slot.name, slot.proc.pid)

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            with self._lock:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                for slot in self._slots:
                    self._check(slot, now)

    def _check(self, slot: _Slot, now: float) -> None:
        assert slot.backoff is not None
        proc = slot.proc
        if proc is not None:
            code = proc.poll()
            if code is None:
                return
            ran = now - slot.started_at
            if ran > _STABLE_S:
                slot.backoff.reset()
            delay = slot.backoff.next_delay()
            log.warning(
                "local node %s exited with code %s after %.1fs; restarting in %.1fs", slot.name, code, ran, delay
            )
            slot.proc = None
            slot.restart_at = now + delay
            return
        if now >= slot.restart_at:
            slot.restarts += 1
            self._spawn(slot)

    def stop(self) -> None:
        """Terminate every node (SIGTERM, SIGKILL after a grace) and stop supervising."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            procs = [s.proc for s in self._slots if s.proc is not None]
            for slot in self._slots:
                slot.proc = None
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + _STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2.0)
        self._tmpdir.cleanup()


def local_entries(nodes: list[dict[str, Any]], pids: list[int]) -> list[dict[str, Any]]:
    """The scheduler's entries of the local nodes, found by process id, not name: every web server
    sharing an external scheduler names its local nodes alike."""
    wanted = set(pids)
    return [node for node in nodes if node.get("pid") in wanted]


def ready_local_nodes(nodes: list[dict[str, Any]], pids: list[int]) -> int:
    """How many of the local nodes the scheduler lists as able to take work: with credit (a node offers
    it only after its inference process is up and its model preloaded) or already working."""
    return sum(1 for node in local_entries(nodes, pids) if node.get("credit") or node.get("tasks"))


def wait_until_ready(
    supervisor: LocalNodeSupervisor,
    list_nodes: Callable[[], list[dict[str, Any]]],
    timeout_s: float,
    *,
    poll_s: float = 0.1,
) -> bool:
    """Block until every local node can take work (True), or until ``timeout_s`` passed, a local node
    exited or the scheduler did not answer (False, with a warning saying which): ``serve`` waits so
    before it accepts connections, as classic mode loads its model first, so the first requests find
    a warm node instead of waiting for a Python process, its imports and its model (seconds on a GPU).
    Waiting longer would not help in the other cases: requests queue until the nodes join."""
    count = supervisor.count
    if count <= 0 or timeout_s <= 0:
        return True
    started = time.monotonic()
    deadline = started + timeout_s
    log.info("waiting up to %.0f s for %d local node(s) to start and load their model", timeout_s, count)
    while True:
        pids = supervisor.pids()
        try:
            nodes = list_nodes()
        except LamaCleanerError as exc:
            log.warning("serving without waiting for the local nodes: the scheduler did not answer (%s)", exc)
            return False
        mine = local_entries(nodes, pids)
        ready = ready_local_nodes(mine, pids)
        if ready >= count:
            log.info("%d local node(s) ready after %.1f s", count, time.monotonic() - started)
            return True
        idle_for_good = [n["name"] for n in mine if not n.get("queues")]
        if idle_for_good:
            log.warning(
                "serving with %d of %d local node(s) ready: %s joined no queue (see the scheduler's log for why, "
                "e.g. a CPU node and the gpu queue)",
                ready,
                count,
                ", ".join(idle_for_good),
            )
            return False
        if supervisor.any_exited():
            log.warning(
                "serving with %d of %d local node(s) ready: one exited while starting (its output says why; "
                "it is restarted and requests queue until a node joins)",
                ready,
                count,
            )
            return False
        if time.monotonic() >= deadline:
            log.warning(
                "serving with %d of %d local node(s) ready after %.0f s (distributed.local_nodes_ready_timeout_s); "
                "requests queue until they join",
                ready,
                count,
                timeout_s,
            )
            return False
        time.sleep(poll_s)
