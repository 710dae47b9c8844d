"""Fixtures of the distributed integration tests: real node, scheduler and server subprocesses.

Everything talks over real ZeroMQ sockets on 127.0.0.1 and every process started here is stopped
(SIGTERM, then SIGKILL) when its test ends. Fault tests use a config file with a 0.2 s heartbeat so
that "offline after 3 missed heartbeats" takes well under a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq

from lama_cleaner.inpaint_request import default_form
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.support.distributed_config import FAKE_PLUGIN, FAST
from tests.support.server_process import REPO_ROOT, free_port, free_port_block, server_env
from tests.support.waiting import wait_for


def png(width: int = 48, height: int = 32, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def mask_png(width: int = 48, height: int = 32) -> bytes:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    ok, buf = cv2.imencode(".png", mask)
    assert ok
    return buf.tobytes()


def task_form(prompt: str = "", **overrides: str) -> dict[str, str]:
    return default_form(prompt=prompt, hdStrategy="Original", **overrides)


def write_config(directory: Path, data: dict[str, Any], name: str = "config.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(data))
    return path


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


class Proc:
    """A subprocess of ``python -m lama_cleaner ...`` with its output in a file."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="lama-dist-", suffix=".log", delete=False)
        self.cmd = [sys.executable, "-m", "lama_cleaner", *args]
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=REPO_ROOT,
            env=server_env(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process itself only (its inference child dies with it via PDEATHSIG)."""
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return self.proc.returncode


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; all stopped at the end (output printed on failure by pytest -rA)."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()
        # Shown by pytest only when the test failed.
        print(f"----- {' '.join(proc.cmd[2:5])} (pid {proc.pid}, exit {proc.proc.returncode}) -----")
        print(proc.output()[-6000:])


@pytest.fixture
def tmp_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, FAST)


def start_node(procs: list[Proc], scheduler: str, config: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    node = Proc(
        [
            "node",
            "--scheduler",
            scheduler,
            "--device",
            "cpu",
            "--plugins",
            FAKE_PLUGIN,
            "--config",
            str(config),
            "--log-level",
            "DEBUG",
            "--stop-grace",
            "1",
            *extra,
        ],
        env=env,
    )
    procs.append(node)
    return node


class ScriptedScheduler:
    """A hand-driven stand-in for the scheduler (one control ROUTER, one ``cpu`` queue ROUTER).

    Used to test the node's side of the protocol in isolation: the test decides exactly what the
    node is sent and asserts on exactly what it sends back.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.ctx = zmq.Context()
        self.host = host
        self.control_port = free_port(host)
        self.queue_port = free_port(host)
        self.endpoint = f"tcp://{host}:{self.control_port}"
        self.queue_endpoint = f"tcp://{host}:{self.queue_port}"
        self.control: zmq.Socket | None = None
        self.queue: zmq.Socket | None = None
        self.answer_heartbeats = True
        self.backlog: list[tuple[str, bytes, p.Message]] = []
        """Answer each node HEARTBEAT while receiving (so the node sees a live scheduler)."""
        self.bind()

    def bind(self) -> None:
        self.control = self._bind(self.endpoint)
        self.queue = self._bind(self.queue_endpoint)

    def _bind(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)

        def try_bind() -> bool:
            sock.bind(endpoint)  # a just-closed socket releases its port asynchronously
            return True

        wait_for(try_bind, 10, f"{endpoint} to be free")
        return sock

    def unbind(self) -> None:
        self.backlog.clear()
        for sock in (self.control, self.queue):
            if sock is not None:
                sock.close(0)
        self.control = self.queue = None

    def recv(self, timeout: float = 10.0, commands: Sequence[str] = ()) -> tuple[str, bytes, p.Message]:
        """Next message ("control" | "queue", identity, message) whose command is in ``commands``.

        Other messages are kept (except heartbeats) for a later ``recv`` that asks for them, so two
        messages the node sends at once on different sockets are never lost to the test.
        """
        for i, item in enumerate(self.backlog):
            if not commands or item[2].command in commands:
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        poller = zmq.Poller()
        assert self.control is not None and self.queue is not None
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.queue, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {commands or 'message'} from the node within {timeout}s")
            for sock, _ in poller.poll(left * 1000):
                ident, frames = p.split_identity(sock.recv_multipart())
                msg = p.decode(frames, receiver="scheduler")
                if msg.command == p.HEARTBEAT and self.answer_heartbeats and sock is self.control:
                    self.send("control", ident, p.HEARTBEAT, {})
                item = ("control" if sock is self.control else "queue", ident, msg)
                if not commands or msg.command in commands:
                    return item
                if msg.command != p.HEARTBEAT:
                    self.backlog.append(item)

    def send(
        self, where: str, ident: bytes, command: str, header: dict[str, Any], blobs: dict[str, bytes] | None = None
    ) -> None:
        sock = self.control if where == "control" else self.queue
        assert sock is not None
        frames = p.encode_named(command, header, blobs) if blobs else p.encode(command, header)
        sock.send_multipart([ident, *frames])

    def welcome(self, ident: bytes, node_id: str, interval: float = 0.2, queue_endpoint: str | None = None) -> None:
        """WELCOME granting the ``cpu`` queue (at ``queue_endpoint`` if given: what a scheduler reports)."""
        self.send(
            "control",
            ident,
            p.WELCOME,
            {
                "node_id": node_id,
                "queues": {"cpu": queue_endpoint or self.queue_endpoint},
                "rejected": {"gpu": "no CUDA"},
                "heartbeat_interval_s": interval,
                "liveness": 3,
            },
        )

    def send_task(self, ident: bytes, task_id: str, name: str, prompt: str = "", attempt: int = 1) -> None:
        self.send(
            "queue",
            ident,
            p.TASK,
            {
                "task_id": task_id,
                "attempt": attempt,
                "kind": "inpaint",
                "name": name,
                "form": task_form(prompt),
                "submitter": None,
            },
            {"image": png(), "mask": mask_png()},
        )

    def close(self) -> None:
        self.unbind()
        self.ctx.term()


@pytest.fixture
def scripted() -> Iterator[ScriptedScheduler]:
    sched = ScriptedScheduler()
    yield sched
    sched.close()


def handshake(sched: ScriptedScheduler) -> tuple[bytes, bytes, str]:
    """HELLO -> WELCOME -> READY; returns (control identity, queue identity, node id)."""
    _, ident, hello = sched.recv(60, [p.HELLO])
    node_id = hello.header["node_id"]
    sched.welcome(ident, node_id)
    _, qident, ready = sched.recv(60, [p.READY])
    assert ready.header["node_id"] == node_id
    return ident, qident, node_id


__all__ = [
    "FAKE_PLUGIN",
    "FAST",
    "Proc",
    "ScriptedScheduler",
    "handshake",
    "mask_png",
    "merged",
    "png",
    "start_node",
    "task_form",
    "wait_for",
    "write_config",
]


# ---------------------------------------------------------------------- whole-system helpers
class DistServer:
    """A ``lama-cleaner`` web server with ``--plugins distributed`` (embedded scheduler by default)."""

    def __init__(
        self,
        data_dir: Path,
        config: Path,
        *,
        local_nodes: int = 1,
        scheduler_port: int | None = None,
        external_scheduler: str | None = None,
        env: dict[str, str] | None = None,
        model: str = "cv2",
        bind_host: str = "127.0.0.1",
    ) -> None:
        """``bind_host``: where the embedded scheduler listens (``0.0.0.0`` = every interface);
        ``self.scheduler`` is always the loopback address nodes started by the test connect to."""
        from tests.support.server_process import ServerProcess

        self.scheduler_port = scheduler_port or free_port_block()
        self.scheduler = external_scheduler or f"tcp://127.0.0.1:{self.scheduler_port}"
        args = ["--plugins", f"distributed,{FAKE_PLUGIN}", "--config", str(config), "--local-nodes", str(local_nodes)]
        if external_scheduler:
            args += ["--scheduler", external_scheduler]
        else:
            args += ["--data-dir", str(data_dir), "--scheduler-bind", f"tcp://{bind_host}:{self.scheduler_port}"]
        self.server = ServerProcess(args, env=env, model=model)
        self.url = self.server.url

    def start(self) -> DistServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def sigkill(self) -> None:
        """SIGKILL the web process only (what a crash looks like to its local nodes)."""
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait(10)


def api_submit(url: str, model: str, prompt: str = "", **extra: str) -> dict[str, Any]:
    import requests

    data = {"model": model, "prompt": prompt, "hdStrategy": "Original", **extra}
    r = requests.post(
        f"{url}/api/v1/tasks", data=data, files={"image": ("i.png", png()), "mask": ("m.png", mask_png())}, timeout=30
    )
    assert r.status_code in (200, 202), (r.status_code, r.text)
    return r.json()


def api_task(url: str, task_id: str) -> dict[str, Any]:
    import requests

    r = requests.get(f"{url}/api/v1/tasks/{task_id}", timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def api_nodes(url: str) -> list[dict[str, Any]]:
    import requests

    r = requests.get(f"{url}/api/v1/nodes", timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["nodes"]


def wait_status(url: str, task_id: str, statuses: Sequence[str], timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(
        lambda: (t := api_task(url, task_id))["status"] in statuses and t,
        timeout,
        f"task {task_id} to reach {statuses}",
    )


def wait_nodes(url: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        nodes = [n for n in api_nodes(url) if n["state"] in ("idle", "busy")]
        return nodes if len(nodes) >= count else None

    return wait_for(ready, timeout, f"{count} node(s) online")


@pytest.fixture
def servers() -> Iterator[list[DistServer]]:
    started: list[DistServer] = []
    yield started
    for server in reversed(started):
        server.stop()
        print(f"----- server {server.url} -----")
        print(server.server.output()[-8000:])
