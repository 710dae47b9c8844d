"""Start the real ``lama-cleaner`` server as a subprocess on a free loopback port, and stop it for sure.

Used by the integration tests, the browser test and the benchmark. The server runs in its own
process group so that stopping it also stops whatever it spawned (local nodes of the distributed
plugin); its output goes to a file that is shown when start-up fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import requests

from .waiting import WaitTimeout, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _fixed_port_range() -> tuple[int, int]:
    """Ports the kernel does not hand out by itself: below the ephemeral range, from which it picks the
    local port of every outgoing connection (and ``free_port``'s), so no other test's client takes them."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 20000, 60000
    return (10000, low - 16) if low > 12000 else (20000, 60000)


def free_port_block(count: int = 3) -> int:
    """A port P such that P..P+count-1 were all free a moment ago: what an embedded scheduler binds
    (its control port, then one port per queue)."""
    import random

    first, last = _fixed_port_range()
    for _ in range(200):
        base = random.randint(first, last - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no block of free ports found")


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test environment: repo root importable (``--plugins tests.support.…``), unbuffered output,
    stacks printed on a fatal signal."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a fatal signal (SIGABRT, see ServerProcess) prints every stack
    if extra:
        env.update(extra)
    return env


class ServerProcess:
    """One ``python -m lama_cleaner`` subprocess (``--model cv2 --device cpu`` unless told otherwise)."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        model: str | None = "cv2",
        device: str | None = "cpu",
        ready_timeout: float = 60.0,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "lama_cleaner", "--host", HOST, "--port", str(self.port)]
        if model:
            cmd += ["--model", model]
        if device:
            cmd += ["--device", device]
        self.cmd = cmd + list(args)
        self.env = server_env(env)
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="lama-cleaner-server-", suffix=".log", delete=False)

    # ------------------------------------------------------------------ lifecycle
    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to answer (``start`` waits)."""
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self.proc

    def start(self) -> ServerProcess:
        self.launch()
        try:
            wait_for(self._ready_or_dead, self.ready_timeout, f"server {self.url} to answer GET /model")
        except WaitTimeout as exc:
            self._dump_stacks()
            self.stop()
            raise ServerStartError(f"{exc}; the server printed:\n{self.output()[-16000:]}") from None
        except BaseException:
            self.stop()
            raise
        if self.proc.poll() is not None:
            code = self.stop()
            raise ServerStartError(f"server exited with code {code}:\n{self.output()[-4000:]}")
        return self

    def _dump_stacks(self) -> None:
        """Make a server stuck while starting print every thread's stack before it is stopped, so that
        the report says where it waits: SIGABRT, which ``faulthandler`` (armed by ``server_env``)
        answers with the stacks before the process dies."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGABRT)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: self.proc.poll() is not None, 5, "the server to abort", interval=0.1)
        except WaitTimeout:
            pass  # a handler of its own took SIGABRT; stop() ends it

    def _ready_or_dead(self) -> bool:
        """True once the server answers, or once it has exited (start() then reports why)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return True
        try:
            return requests.get(self.url + "/model", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the whole process group, then SIGKILL it if it lingers; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(timeout)
        self._signal_group(signal.SIGKILL)  # children that outlived their parent
        return proc.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def output(self) -> str:
        """Everything the server printed so far."""
        if not self._log.closed:
            self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerStartError(RuntimeError):
    """The server process died before it became ready (its output is in the message)."""
