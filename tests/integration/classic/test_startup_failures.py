"""Start-up failures of ``serve``, ``scheduler`` and ``node``: one line on stderr, a non-zero exit.

A port already in use, a data directory held by another scheduler or missing migrations used to
escape ``serve`` as a raw ZMQError/RuntimeError traceback. Every case here is provoked for real:
a socket of this test holds the port, a real ``lama-cleaner scheduler`` holds the data directory.
Also: the standalone scheduler's exit status (non-zero when its loop crashed, so systemd's
``Restart=on-failure`` restarts it; 0 after SIGTERM) and its ``--scheduler-bind`` spelling.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server_process import HOST, REPO_ROOT, server_env
from tests.support.waiting import wait_for

DEADLINE_S = 60.0
"""Start-up of the interpreter, the plugin manager and the failing step, on a loaded 2-core box."""
SERVE = ["--plugins", "distributed", "--model", "cv2", "--device", "cpu", "--host", HOST, "--local-nodes", "0"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m lama_cleaner ARGS`` to completion; the timeout is the deadline for exiting."""
    return subprocess.run([sys.executable, "-m", "lama_cleaner", *args], cwd=REPO_ROOT, env=server_env(env),
                          capture_output=True, text=True, timeout=DEADLINE_S, check=False)  # fmt: skip


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Lines that report an error: the CLI's ``...: error: ...`` or a logged ``ERROR``."""
    return [line for line in result.stderr.splitlines() if ": error: " in line or " ERROR " in line]


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback TCP port this test keeps bound (and listening) until it ends."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


class SchedulerProcess:
    """A real ``lama-cleaner scheduler`` (its own process group), output in files."""

    def __init__(self, tmp_path: Path, *args: str, prelude: str = "") -> None:
        self.out = tmp_path / f"scheduler-{len(list(tmp_path.glob('scheduler-*.out')))}.out"
        self.err = self.out.with_suffix(".err")
        # prelude: Python run in the process before scheduler_main (a fault to inject), else plain CLI.
        code = (
            "import sys\n"
            + prelude
            + (
                "from lama_cleaner.plugins.distributed.scheduler.main import scheduler_main\n"
                "sys.exit(scheduler_main(sys.argv[1:]))\n"
            )
        )
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=server_env(),
                                         stdout=out, stderr=err, start_new_session=True)  # fmt: skip

    def wait_ready(self) -> str:
        """The control endpoint from the ``scheduler ready: control ENDPOINT`` line."""

        def ready() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"scheduler exited with {self.proc.returncode}: {self.err.read_text()}")
            match = re.search(r"scheduler ready: control (\S+)", self.out.read_text())
            return match.group(1) if match else None

        return wait_for(ready, DEADLINE_S, "the scheduler to be ready", interval=0.1)

    def wait_exit(self) -> int:
        return self.proc.wait(DEADLINE_S)

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[list[SchedulerProcess]]:
    started: list[SchedulerProcess] = []
    yield started
    for proc in started:
        proc.kill()


def start_scheduler(started: list[SchedulerProcess], tmp_path: Path, *args: str, prelude: str = "") -> SchedulerProcess:
    proc = SchedulerProcess(tmp_path, *args, prelude=prelude)
    started.append(proc)
    return proc


# ------------------------------------------------------------------ serve
def test_serve_with_the_scheduler_port_in_use_exits_with_one_line(tmp_path, held_port):
    bind = f"tcp://{HOST}:{held_port}"
    result = run_cli(*SERVE, "--port", "0", "--scheduler-bind", bind, "--data-dir", str(tmp_path / "data"))
    line = assert_one_clear_line(result, "Address already in use", bind, "--scheduler-bind")
    assert line.startswith("lama-cleaner: error: ")
    assert result.returncode == 1


@pytest.fixture
def held_port_above_a_free_one() -> Iterator[int]:
    """A loopback TCP port this test keeps listening on, whose port below was free a moment ago."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind((HOST, 0))
            port = int(held.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((HOST, port - 1))
                except OSError:
                    continue
            held.listen()
            yield port
            return
    raise RuntimeError("no free port below a bound one in 100 tries")


def test_serve_with_a_queue_port_in_use_exits_with_one_line(tmp_path, held_port_above_a_free_one):
    """The scheduler binds its control port, then the next ports for its queues: the first queue's port is
    held here. (The socket that failed to bind once stayed open, and closing the context waited for it
    for ever: the server hung while starting instead of saying why.)"""
    bind = f"tcp://{HOST}:{held_port_above_a_free_one - 1}"
    result = run_cli(*SERVE, "--port", "0", "--scheduler-bind", bind, "--data-dir", str(tmp_path / "data"))
    line = assert_one_clear_line(result, "Address already in use", bind, "the next 2 ports", "--scheduler-bind")
    assert line.startswith("lama-cleaner: error: ")
    assert result.returncode == 1


def test_serve_on_a_data_dir_held_by_a_scheduler_exits_with_one_line(tmp_path, schedulers):
    data = tmp_path / "data"
    holder = start_scheduler(schedulers, tmp_path, "--scheduler-bind", f"tcp://{HOST}:0", "--data-dir", str(data))
    holder.wait_ready()
    result = run_cli(*SERVE, "--port", "0", "--scheduler-bind", f"tcp://{HOST}:0", "--data-dir", str(data))
    assert_one_clear_line(result, "another scheduler is already using", str(data))


def test_serve_without_migrations_exits_with_one_line(tmp_path):
    missing = tmp_path / "no-migrations-here"
    result = run_cli(*SERVE, "--port", "0", "--scheduler-bind", f"tcp://{HOST}:0", "--data-dir",
                     str(tmp_path / "data"), env={"LAMA_CLEANER_MIGRATIONS_DIR": str(missing)})  # fmt: skip
    assert_one_clear_line(result, "migrations", str(missing))


# ------------------------------------------------------------------ standalone scheduler
def test_a_second_scheduler_on_the_same_data_dir_exits_with_one_line(tmp_path, schedulers):
    data = tmp_path / "data"
    first = start_scheduler(schedulers, tmp_path, "--scheduler-bind", f"tcp://{HOST}:0", "--data-dir", str(data))
    first.wait_ready()
    result = run_cli("scheduler", "--scheduler-bind", f"tcp://{HOST}:0", "--data-dir", str(data))
    assert_one_clear_line(result, "another scheduler is already using", str(data))
    assert first.proc.poll() is None, "the first scheduler must be unaffected"


def test_scheduler_with_its_port_in_use_exits_with_one_line(tmp_path, held_port):
    bind = f"tcp://{HOST}:{held_port}"
    result = run_cli("scheduler", "--scheduler-bind", bind, "--data-dir", str(tmp_path / "data"))
    assert_one_clear_line(result, "Address already in use")


def test_scheduler_accepts_scheduler_bind_and_bind_and_exits_0_on_sigterm(tmp_path, schedulers):
    for flag in ("--scheduler-bind", "--bind"):
        proc = start_scheduler(schedulers, tmp_path, flag, f"tcp://{HOST}:0", "--data-dir", str(tmp_path / flag))
        endpoint = proc.wait_ready()
        assert re.fullmatch(rf"tcp://{re.escape(HOST)}:\d+", endpoint) and not endpoint.endswith(":0")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == 0, proc.stderr


def test_scheduler_exits_non_zero_when_its_loop_crashed(tmp_path, schedulers):
    """A fault injected into the loop thread (its per-round handler raises) stands for any bug that
    kills the loop; the process must then exit 1 by itself, not 0."""
    prelude = textwrap.dedent(
        """
        from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
        assert hasattr(Scheduler, "_round"), "the injection point moved"
        def _fault(self, *args, **kwargs):
            raise RuntimeError("injected loop fault")
        Scheduler._round = _fault
        """
    )
    proc = start_scheduler(schedulers, tmp_path, "--scheduler-bind", f"tcp://{HOST}:0", "--data-dir",
                           str(tmp_path / "data"), prelude=prelude)  # fmt: skip
    assert proc.wait_exit() == 1, proc.stderr
    assert "injected loop fault" in proc.stderr
    assert "scheduler loop died" in proc.stderr


# ------------------------------------------------------------------ node
def test_node_with_an_address_zeromq_cannot_connect_to_exits_with_one_line():
    """Well-formed for the config check, refused by ZeroMQ's connect (a host name with a space)."""
    result = run_cli("node", "--scheduler", "tcp://bad host:5570", "--device", "cpu", "--models", "cv2")
    assert_one_clear_line(result, "tcp://bad host:5570", "Invalid argument")
    assert result.returncode == 1


@pytest.mark.parametrize("endpoint", [f"tcp://{HOST}:0", f"tcp://{HOST}", "localhost:5570"])
def test_node_refuses_a_scheduler_address_without_a_port_to_connect_to(endpoint):
    """``:0`` would connect to nothing and retry for ever; it is a usage error (exit 2)."""
    result = run_cli("node", "--scheduler", endpoint, "--device", "cpu", "--models", "cv2")
    assert result.returncode == 2, result.stderr
    assert "--scheduler" in result.stderr and "Traceback" not in result.stderr
