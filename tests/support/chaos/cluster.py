"""The real processes of a soak and the faults done to them.

One web server (``lama-cleaner --plugins distributed``: Flask, ``/api/v1`` and the embedded
scheduler with its SQLite journal in ``workdir/journal``) and N node subprocesses. Each node
reaches the scheduler through two loopback TCP proxies of its own (control and queue, see
``proxied_node``), so cutting one node's link drops both of its connections and nothing else.

The faults are real: ``SIGKILL`` of the server (then a restart on the same HTTP and scheduler
ports with the same journal), ``SIGKILL`` of a node (its inference child follows it through
PDEATHSIG), and a proxy cut that drops every open connection and refuses new ones until restored:
of one node's links, or of the clients' way to the server (requests in flight lose their replies,
possibly after the task was accepted, which is what idempotency keys are for).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from ..distributed_config import FAST
from ..server_process import REPO_ROOT, ServerProcess, free_port, server_env
from ..tcp_proxy import LoopbackProxy
from ..waiting import wait_for
from .proxied_node import QUEUE_MAP_ENV

QUEUE = "cpu"


@dataclass(frozen=True)
class ClusterSettings:
    """What the soak runs: how many nodes, and the timing settings it gives every process."""

    nodes: int = 3
    heartbeat_interval_s: float = 0.25
    heartbeat_liveness: int = 4
    """A node silent for interval x liveness (1 s) is declared lost and its task re-queued."""
    max_attempts: int = 3
    """Attempts per task (the product's default): a task whose node is lost, or whose inference
    process dies, three times fails, which the soak reports as a failure, not a loss."""
    start_timeout_s: float = 120.0
    external_scheduler: bool = False
    """Run ``lama-cleaner scheduler`` as its own process (the journal's owner) and the web server with
    ``--scheduler``, instead of embedding it: the scheduler and the web server then fail apart."""

    def config(self) -> dict[str, Any]:
        dist = dict(FAST["distributed"])
        dist.update(
            queues=[QUEUE],
            heartbeat_interval_s=self.heartbeat_interval_s,
            heartbeat_liveness=self.heartbeat_liveness,
            retry={"inpaint": {"max_attempts": self.max_attempts, "backoff_base_s": 0.05, "backoff_max_s": 0.5}},
        )
        return {"distributed": dist}


def scheduler_ports(host: str = "127.0.0.1") -> int:
    """A port P with P+1 free as well (control socket + the one queue), found by asking the kernel."""
    for _ in range(200):
        port = free_port(host)
        if port < 65535 and _free(host, port + 1):
            return port
    raise RuntimeError("no two consecutive free ports found")


def _free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (read from /proc; Linux only, like the rest of the soak)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class NodeSlot:
    """One node's place in the cluster: its two proxies (kept across restarts) and its current process."""

    def __init__(self, index: int, scheduler_port: int, config: Path, log_dir: Path) -> None:
        self.index = index
        self.name = f"chaos-node-{index}"
        self.control = LoopbackProxy(scheduler_port)
        self.queue = LoopbackProxy(scheduler_port + 1)
        self.granted = f"tcp://127.0.0.1:{scheduler_port + 1}"
        self.config = config
        self.log_path = log_dir / f"{self.name}.log"
        self._log: TextIO | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.is_cut = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        if self._log is None:
            self._log = open(self.log_path, "a")  # noqa: SIM115 - kept open across restarts, closed in close()
        env = server_env({QUEUE_MAP_ENV: json.dumps({self.granted: self.queue.endpoint})})
        cmd = [sys.executable, "-m", "tests.support.chaos.proxied_node", "node",
               "--scheduler", self.control.endpoint, "--queues", QUEUE, "--models", "cv2", "--device", "cpu",
               "--name", self.name, "--config", str(self.config), "--stop-grace", "1"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.starts += 1

    def sigkill(self) -> None:
        """SIGKILL the node process itself (its inference child dies with it: PDEATHSIG)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP the node process (a long GC pause, a swapped-out host): silent, then back with SIGCONT."""
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)

    def kill_inference(self) -> bool:
        """SIGKILL the node's inference process only (what the OOM killer does); False if it had none.

        The node's other child, multiprocessing's resource tracker, is left alone: the fault is
        the death of the process that runs the model.
        """
        if not self.alive:
            return False
        assert self.proc is not None
        killed = False
        for pid in children_of(self.proc.pid):
            try:
                if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                os.kill(pid, signal.SIGKILL)
                killed = True
            except (ProcessLookupError, FileNotFoundError):
                pass
        return killed

    def cut_link(self) -> None:
        self.is_cut = True
        self.control.cut()
        self.queue.cut()

    def restore_link(self) -> None:
        self.control.restore()
        self.queue.restore()
        self.is_cut = False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the node's whole session."""
        self.thaw()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(10)

    def close(self) -> None:
        self.stop()
        self.control.close()
        self.queue.close()
        if self._log is not None:
            self._log.close()


class SchedulerProcess:
    """``lama-cleaner scheduler`` in its own process, restartable on the same port and journal."""

    def __init__(self, bind: str, journal_dir: Path, config: Path, log_path: Path) -> None:
        self.port = int(bind.rsplit(":", 1)[1])
        self.cmd = [sys.executable, "-m", "lama_cleaner", "scheduler", "--bind", bind,
                    "--data-dir", str(journal_dir), "--config", str(config)]  # fmt: skip
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float) -> float:
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=REPO_ROOT, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        wait_for(self._listening, timeout, f"the scheduler to listen on port {self.port}")
        if not self.alive:
            raise RuntimeError(f"the scheduler exited with {self.proc.returncode}; see {self.log_path}")
        return time.monotonic() - started

    def _listening(self) -> bool:
        import socket

        if not self.alive:
            return True  # start() reports it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def sigkill(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)


class ChaosCluster:
    """The web server and its nodes; every method is one step a soak or a fault takes."""

    def __init__(self, workdir: Path, settings: ClusterSettings) -> None:
        self.settings = settings
        self.workdir = workdir
        self.journal_dir = workdir / "journal"
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "config.json"
        self.config.write_text(json.dumps(settings.config()))
        self.scheduler_port = scheduler_ports()
        bind = f"tcp://127.0.0.1:{self.scheduler_port}"
        args = ["--plugins", "distributed", "--config", str(self.config), "--local-nodes", "0"]
        self.scheduler: SchedulerProcess | None = None
        if settings.external_scheduler:
            self.scheduler = SchedulerProcess(bind, self.journal_dir, self.config, self.log_dir / "scheduler.log")
            args += ["--scheduler", bind]
        else:
            args += ["--data-dir", str(self.journal_dir), "--scheduler-bind", bind]
        self.server = ServerProcess(args, model="cv2", ready_timeout=settings.start_timeout_s)
        self.url = self.server.url
        """The server itself (for the harness's own requests)."""
        self.front = LoopbackProxy(self.server.port)
        self.client_url = f"http://127.0.0.1:{self.front.port}"
        """The server through a proxy the soak can cut: the clients' way in, so a cut loses replies."""
        self.nodes = [NodeSlot(i, self.scheduler_port, self.config, self.log_dir) for i in range(settings.nodes)]
        self.server_starts = 0

    # ------------------------------------------------------------------ whole cluster
    def start(self) -> ChaosCluster:
        if self.scheduler is not None:
            self.scheduler.start(self.settings.start_timeout_s)
        self.start_server()
        for node in self.nodes:
            node.start()
        self.wait_nodes_online(len(self.nodes))
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.front.close()
        self.server.stop()
        if self.scheduler is not None:
            self.scheduler.stop()

    def wait_nodes_online(self, count: int, timeout: float | None = None) -> None:
        def online() -> bool:
            reply = requests.get(f"{self.url}/api/v1/nodes", timeout=5)
            nodes = reply.json()["nodes"]
            return sum(n["state"] in ("idle", "busy") for n in nodes) >= count

        wait_for(online, timeout or self.settings.start_timeout_s, f"{count} node(s) online at {self.url}")

    # ------------------------------------------------------------------ the server
    def start_server(self) -> float:
        """Start (or restart) the server on its ports with its journal; returns the seconds until it answered."""
        started = time.monotonic()
        self.server.start()
        self.server_starts += 1
        return time.monotonic() - started

    def kill_server(self) -> None:
        """SIGKILL the web process (the embedded scheduler and its journal writer with it)."""
        proc = self.server.proc
        assert proc is not None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def term_server(self, timeout: float = 90.0) -> None:
        """SIGTERM the web process (a deploy or a scale-in) and wait for its graceful exit."""
        proc = self.server.proc
        assert proc is not None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout)

    def server_alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    def server_output(self) -> str:
        return self.server.output()

    # ------------------------------------------------------------------ a standalone scheduler
    def kill_scheduler(self) -> None:
        assert self.scheduler is not None, "the scheduler is embedded in the server"
        self.scheduler.sigkill()

    def start_scheduler(self) -> float:
        """Start the standalone scheduler again on its ports and journal; seconds until it listened."""
        assert self.scheduler is not None, "the scheduler is embedded in the server"
        return self.scheduler.start(self.settings.start_timeout_s)

    # ------------------------------------------------------------------ journal
    @property
    def journal_file(self) -> Path:
        from lama_cleaner.plugins.distributed.scheduler.service import JOURNAL_FILE

        return self.journal_dir / JOURNAL_FILE
