"""Start, drive and stop the peer systems (bare pyzmq broker, Celery + Redis) for a benchmark.

Every runner has the same small surface so ``bench_distributed.py`` measures all systems with
the same loops:

- ``add_nodes(k)``: start ``k`` more worker processes and wait until they take work;
- ``batch(op, count, body)``: submit ``count`` tasks as fast as the client allows, wait for every
  result, check each, return elapsed seconds;
- ``call(op, body)``: one task, submit and wait (a round trip);
- ``close()``: stop every process it started.

``op`` is ``"noop"``, ``"echo"`` (``body`` sent and returned) or ``"sleep:<ms>"``.
"""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from pathlib import Path

from benchmarks.harness import ProcessGroup, free_ports, port_open, python_argv, wait_for


class RunnerUnavailable(RuntimeError):
    """The system cannot run here (a program or package missing); the benchmark skips its column."""


class ZmqLBRunner:
    """The ROUTER/ROUTER load-balancing broker of :mod:`benchmarks.peers.zmq_lb`, no persistence."""

    name = "zmq-lb"
    label = "bare pyzmq LB broker (no persistence)"
    cpu_roles = {"broker/scheduler": "lb-broker", "workers": "lb-worker-"}

    def __init__(self, group: ProcessGroup, timeout_s: float = 60.0) -> None:
        from benchmarks.peers.zmq_lb import LBClient

        self.group = group
        self.timeout_s = timeout_s
        front, back = free_ports(2)
        self.frontend = f"tcp://127.0.0.1:{front}"
        self.backend = f"tcp://127.0.0.1:{back}"
        group.start("lb-broker", python_argv("-m", "benchmarks.peers.zmq_lb", "broker", self.frontend, self.backend))
        wait_for(lambda: port_open(back) and port_open(front), 20, "load-balancing broker listening")
        self.client = LBClient(self.frontend)
        self.nodes = 0

    def add_nodes(self, k: int) -> None:
        for _ in range(k):
            self.nodes += 1
            self.group.start(
                f"lb-worker-{self.nodes}", python_argv("-m", "benchmarks.peers.zmq_lb", "worker", self.backend)
            )
        # All workers take work once `nodes` sleeping tasks run at the same time.
        self._wait_parallel(self.nodes)

    def _wait_parallel(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.group.check_alive()
            start = time.perf_counter()
            self.batch("sleep:100", n)
            if time.perf_counter() - start < 0.19:
                return
        raise TimeoutError(f"{n} load-balancing workers never ran in parallel")

    def batch(self, op: str, count: int, body: bytes = b"") -> float:
        ids = {f"{i}".encode() for i in range(count)}
        opb = op.encode()
        start = time.perf_counter()
        for tid in ids:
            self.client.submit(tid, opb, body)
        pending = set(ids)
        while pending:
            tid, reply = self.client.recv(self.timeout_s)
            if op == "echo" and len(reply) != len(body):
                raise RuntimeError(f"echo reply of {len(reply)} bytes for a {len(body)}-byte body")
            pending.discard(tid)
        return time.perf_counter() - start

    def call(self, op: str = "noop", body: bytes = b"") -> None:
        reply = self.client.call(uuid.uuid4().bytes, op.encode(), body, self.timeout_s)
        if op == "echo" and len(reply) != len(body):
            raise RuntimeError("short echo reply")

    def close(self) -> None:
        self.client.close()
        for name in [n for n in self.group.procs if n.startswith("lb-")]:
            self.group.stop(name)


class CeleryRunner:
    """Celery workers (one per node, concurrency 1) on a private Redis, results in Redis.

    ``pool="prefork"`` (the default, and Celery's own default) is the peer the targets compare
    against: ``task_reject_on_worker_lost`` is about a pool *child* process dying, so it only means
    something with prefork, and a prefork worker has the same shape as our node (a supervisor that
    keeps talking to the broker plus a child that runs the task and can be killed). ``pool="solo"``
    runs the task in the worker's own process (no child hop, nothing to lose separately): a lighter
    Celery, reported as an extra column for reference.
    """

    name = "celery"
    label = "Celery + Redis (prefork -c 1, acks_late, prefetch 1)"
    cpu_roles = {"broker/scheduler": "redis", "workers": "celery-worker-"}

    def __init__(self, group: ProcessGroup, work_dir: Path, timeout_s: float = 60.0, pool: str = "prefork") -> None:
        if pool not in ("prefork", "solo"):
            raise ValueError(f"unsupported celery pool {pool!r}")
        self.pool = pool
        if pool != "prefork":
            self.name = f"celery-{pool}"
            self.label = f"Celery + Redis ({pool} pool, acks_late, prefetch 1)"
            self.cpu_roles = {"broker/scheduler": f"redis-{pool}", "workers": f"celery-{pool}-worker-"}
        redis_server = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if redis_server is None:
            raise RunnerUnavailable("redis-server is not installed (Debian package redis-server)")
        celery_bin = shutil.which("celery")
        try:
            import celery  # noqa: F401
            import redis  # noqa: F401
        except ImportError as exc:
            raise RunnerUnavailable(f"python package missing: {exc.name}") from exc
        if celery_bin is None:
            raise RunnerUnavailable("the `celery` command is not on PATH")
        self.group = group
        self.timeout_s = timeout_s
        self.celery_bin = celery_bin
        (port,) = free_ports(1)
        self.url = f"redis://127.0.0.1:{port}/0"
        work_dir.mkdir(parents=True, exist_ok=True)
        self.redis_name = self.cpu_roles["broker/scheduler"]
        group.start(
            self.redis_name,
            [
                redis_server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work_dir),
                "--protected-mode",
                "yes",
            ],
        )
        wait_for(lambda: port_open(port), 20, "redis-server listening")
        self.env = {"LC_BENCH_REDIS_URL": self.url}  # the workers' app reads it at import
        from benchmarks.peers.celery_app import create_app

        self.app = create_app(self.url)  # this system's own client connections
        self.nodes = 0

    def add_nodes(self, k: int) -> None:
        for _ in range(k):
            self.nodes += 1
            self.group.start(
                f"{self.cpu_roles['workers']}{self.nodes}",
                [
                    self.celery_bin,
                    "-A",
                    "benchmarks.peers.celery_app",
                    "worker",
                    "-P",
                    self.pool,
                    "-c",
                    "1",
                    "-n",
                    f"w{self.nodes}@lcbench",
                    "-l",
                    "warning",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.group.check_alive()
            replies = self.app.control.ping(timeout=0.5) or []
            if len(replies) >= self.nodes:
                break
        else:
            raise TimeoutError(f"only some of {self.nodes} celery workers answered ping")
        self.batch("noop", 4 * self.nodes)  # warm the connections of every worker

    def _send(self, op: str, body: bytes):  # noqa: ANN202 - celery AsyncResult
        if op == "noop":
            return self.app.send_task("lc_bench.noop")
        if op == "echo":
            return self.app.send_task("lc_bench.echo", (base64.b64encode(body).decode("ascii"),))
        if op.startswith("sleep:"):
            return self.app.send_task("lc_bench.sleep", (int(op[6:]),))
        raise ValueError(f"unknown op {op!r}")

    def batch(self, op: str, count: int, body: bytes = b"") -> float:
        start = time.perf_counter()
        results = [self._send(op, body) for _ in range(count)]
        for res in results:
            out = res.get(timeout=self.timeout_s)
            if op == "echo" and len(base64.b64decode(out)) != len(body):
                raise RuntimeError("short echo reply from celery")
        return time.perf_counter() - start

    def call(self, op: str = "noop", body: bytes = b"") -> None:
        out = self._send(op, body).get(timeout=self.timeout_s)
        if op == "echo" and len(base64.b64decode(out)) != len(body):
            raise RuntimeError("short echo reply from celery")

    def close(self) -> None:
        try:
            self.app.close()
        except Exception:  # noqa: BLE001 - closing pools must not hide the benchmark's result
            pass
        for name in [n for n in self.group.procs if n.startswith(self.cpu_roles["workers"])]:
            self.group.stop(name, grace=10)
        self.group.stop(self.redis_name)
