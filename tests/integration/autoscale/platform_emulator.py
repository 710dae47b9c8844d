"""A small serverless platform for the tests: one invocation = the shipped handler in a sandbox process.

Like Lambda: the invocation gets the event and a context counting down its time limit; at the limit
the whole sandbox (the handler, its node, the node's inference process) is killed, and the test may
kill it at any other moment (a reclaimed instance). The sandbox is its own session, so a kill
reaches every process in it. Nothing may listen for connections inside it:
:meth:`Invocation.listening_ports` reads the sandbox's listening TCP sockets from ``/proc``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.server_process import REPO_ROOT

_LISTEN = "0A"


class Invocation:
    def __init__(self, event: dict[str, Any], limit_s: float, env: dict[str, str], log_path: Path) -> None:
        self.limit_s = limit_s
        self.log = open(log_path, "w+b")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.autoscale.lambda_runtime", str(limit_s)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(event).encode())
        self.proc.stdin.close()
        self.started = time.monotonic()
        self.killed_at_limit = False
        self._timer = threading.Timer(limit_s, self._time_limit)
        self._timer.daemon = True
        self._timer.start()

    def _time_limit(self) -> None:
        if self.proc.poll() is None:
            self.killed_at_limit = True
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole sandbox, as a platform reclaiming it does."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The handler's result (None when it was killed), once it returned."""
        self.proc.wait(timeout)
        assert self.proc.stdout is not None
        lines = self.proc.stdout.read().decode().strip().splitlines()
        return json.loads(lines[-1]) if self.proc.returncode == 0 and lines else None

    def pids(self) -> list[int]:
        """Every live process of the sandbox (its session)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == self.proc.pid and fields[0] != "Z":  # fields[3]: the session id
                found.append(int(entry.name))
        return found

    def listening_ports(self) -> list[int]:
        """TCP ports a process of the sandbox listens on (should be none: a function has no address)."""
        inodes = set()
        for pid in self.pids():
            fd_dir = Path(f"/proc/{pid}/fd")
            try:
                for fd in fd_dir.iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
        ports = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                if cols[3] == _LISTEN and cols[9] in inodes:
                    ports.append(int(cols[1].rsplit(":", 1)[1], 16))
        return ports

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        self._timer.cancel()
        self.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


class FunctionPlatform:
    """Runs invocations of the shipped handler; every sandbox is killed at the end of the test."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.invocations: list[Invocation] = []

    def invoke(self, event: dict[str, Any], limit_s: float) -> Invocation:
        log_path = self.log_dir / f"invocation-{len(self.invocations) + 1}.log"
        invocation = Invocation(event, limit_s, self.env, log_path)
        self.invocations.append(invocation)
        return invocation

    def close(self) -> None:
        for invocation in self.invocations:
            print(f"----- invocation (pid {invocation.proc.pid}) -----\n{invocation.output()[-4000:]}")
            invocation.close()
