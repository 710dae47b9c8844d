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

from .waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test environment: repo root importable (``--plugins tests.support.…``), quiet pip."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
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
    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(self._ready_or_dead, self.ready_timeout, f"server {self.url} to answer GET /model")
        except BaseException:
            self.stop()
            raise
        if self.proc.poll() is not None:
            code = self.stop()
            raise ServerStartError(f"server exited with code {code}:\n{self.output()[-4000:]}")
        return self

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
