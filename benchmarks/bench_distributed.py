"""Benchmark of the distributed backend against its peers, measured side by side in one run.

What it measures (see benchmarks/README.md for how to read it):

- no-op tasks/s with 2 nodes, sequential round-trip p50/p95 and 1 MB payload MB/s, for
  (1) our durable scheduler (SQLite journal, node subprocesses, SchedulerClient producer),
  (2) a bare pyzmq load-balancing broker without persistence (``benchmarks/peers/zmq_lb.py``),
  (3) Celery + Redis set up for long GPU tasks (``benchmarks/peers/celery_app.py``);
- throughput with a simulated 200 ms model for 1, 2, 4, 8, 16 nodes of our system (scaling);
- the time the distributed path adds to a classic ``POST /inpaint`` (cv2, 512x512), with a
  classic server and a ``--plugins distributed`` server running at the same time.

Then it checks the targets (ours >= 5x Celery throughput, <= 1/5 of Celery's round-trip p50,
>= 0.5x the bare broker's throughput, <= 5 ms added per /inpaint, scaling >= 0.9 x N) and prints
PASS/MISS/SKIP for each. A miss is a finding, not a crash: the exit code is 0 unless something
broke. Every process is started by this script on 127.0.0.1 and stopped by it; every loop is
bounded by a count and every wait by a timeout.

    python benchmarks/bench_distributed.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_distributed.py --quick    # CI-size smoke run (well under a minute)

Results: a table on stdout and JSON in benchmarks/results/bench_distributed-<UTC>.json (plus
``bench_distributed-latest.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    ProcessGroup,
    Target,
    consecutive_free_ports,
    format_table,
    port_open,
    python_argv,
    rate,
    ratio,
    self_cpu_s,
    summarize,
    time_calls,
    wait_for,
    write_results,
)
from benchmarks.peers.runners import CeleryRunner, RunnerUnavailable, ZmqLBRunner  # noqa: E402

MB = 1024 * 1024
BENCH_NAME = "bench_distributed"
SLEEP_MS = 200


@dataclass
class Sizes:
    """How much work each measurement does (bounded loops)."""

    noop_tasks: int
    noop_warmup: int
    round_trips: int
    payload_tasks: int
    payload_bytes: int
    sleep_tasks_per_node: int
    scaling_nodes: tuple[int, ...]
    inpaint_requests: int
    timeout_s: float


FULL = Sizes(
    noop_tasks=3000,
    noop_warmup=200,
    round_trips=300,
    payload_tasks=40,
    payload_bytes=MB,
    sleep_tasks_per_node=6,
    scaling_nodes=(1, 2, 4, 8, 16),
    inpaint_requests=60,
    timeout_s=120.0,
)
QUICK = Sizes(
    noop_tasks=300,
    noop_warmup=30,
    round_trips=40,
    payload_tasks=8,
    payload_bytes=MB,
    sleep_tasks_per_node=2,
    scaling_nodes=(1, 2, 4),
    inpaint_requests=10,
    timeout_s=60.0,
)


# ============================================================================ our system
class OursRunner:
    """Our durable scheduler (subprocess), ``lama-cleaner node`` subprocesses and a SchedulerClient.

    The producer side is the product's own :class:`SchedulerClient` (the web server's connection).
    A task is SUBMIT with ``want_result`` -> ACCEPTED (after the journal commit) -> DONE with the
    body (after the outcome's commit), as a classic ``/inpaint`` does in distributed mode; FETCH
    only if no DONE came. :meth:`batch` queues every SUBMIT first and then waits for each, the way
    the peers are driven; :meth:`batch_threads` runs the same tasks from ``2 * nodes + 2`` blocking
    threads, like concurrent HTTP requests on the web server (more threads only add GIL contention
    in this process: 312 no-op tasks/s with 4 threads, 229 with 16, 126 with 64 on a busy 2-core box).
    """

    name = "ours"
    label = "ours: durable scheduler (SQLite journal)"
    has_tiny_inpaint = True
    cpu_roles = {"broker/scheduler": "ours-scheduler", "workers": "ours-node-"}
    node_plugins = "tests.support.fake_models,benchmarks.bench_fakes"

    def __init__(self, group: ProcessGroup, work_dir: Path, timeout_s: float, profile: Path | None = None) -> None:
        try:
            from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
            from lama_cleaner.plugins.distributed.scheduler.service import Scheduler  # noqa: F401
            from lama_cleaner.plugins.distributed.wire import protocol  # noqa: F401
        except ImportError as exc:
            raise RunnerUnavailable(f"our distributed package is incomplete here ({exc})") from exc
        from lama_cleaner.config import Config
        from lama_cleaner.inpaint_request import default_form

        self.group = group
        self.timeout_s = timeout_s
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        base = consecutive_free_ports(3)
        self.endpoint = f"tcp://127.0.0.1:{base}"
        self.config = Config()
        self.config.distributed.scheduler_bind = self.endpoint
        self.config.distributed.data_dir = str(work_dir / "journal")
        cfg_file = work_dir / "config.json"
        cfg_file.write_text(
            json.dumps(
                {
                    "plugins": self.node_plugins.split(","),
                    "distributed": {
                        "scheduler_bind": self.endpoint,
                        "data_dir": self.config.distributed.data_dir,
                        "max_queued": 100000,
                        "max_queued_per_queue": 100000,
                    },
                }
            )
        )
        self.cfg_file = cfg_file
        argv = python_argv(str(Path(__file__).resolve()), "--serve-scheduler", str(cfg_file))
        if profile is not None:
            argv += ["--profile-out", str(profile)]
        group.start("ours-scheduler", argv)
        wait_for(lambda: port_open(base) or not group.alive("ours-scheduler"), 30, "our scheduler listening")
        group.check_alive("ours-scheduler")
        self._cond = threading.Condition()
        self._finished: dict[str, str] = {}
        self.client = SchedulerClient(self.endpoint, self.config, on_event=self._on_event, request_timeout_s=timeout_s)
        self.form = default_form(hdStrategy="Original", sdSeed="42", paintByExampleSeed="42", prompt="0")
        self.tiny_png = _tiny_png()
        self._noop_seq = 0
        self.nodes = 0
        self._pools: dict[int, ThreadPoolExecutor] = {}

    # ------------------------------------------------------------------ events
    def _on_event(self, header: dict[str, Any]) -> None:
        status = header.get("status")
        if status in ("completed", "failed", "cancelled") and not self.client.has_result_slot(header["task_id"]):
            # (a task whose DONE was taken needs no record: keeps this dict from growing)
            with self._cond:
                self._finished[header["task_id"]] = status
                self._cond.notify_all()

    def _wait_finished(self, task_id: str) -> str:
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while task_id not in self._finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"task {task_id} did not finish within {self.timeout_s}s")
                self._cond.wait(left)
            return self._finished.pop(task_id)

    # ------------------------------------------------------------------ tasks
    def _task(self, op: str, body: bytes) -> tuple[dict[str, Any], list[str], list[bytes]]:
        """(task, blob names, blobs) for ``op``.

        ``noop`` is the ``BenchEcho`` image plugin with an 8-byte body: a task that does nothing but
        hand its input back, like the peers' ``noop`` (Celery's returns None). ``tiny-inpaint`` is
        the real inpaint pipeline (form parsing, decode, the 0 ms ``sleep`` model, encode) on an
        8x8 PNG and its mask, reported next to it. ``sleep:<ms>`` is that model holding the node.
        """
        from benchmarks.bench_fakes import ECHO_PLUGIN

        if op == "noop":
            # 8 distinct bytes per task: every task journals its own input, as real uploads differ.
            self._noop_seq += 1
            return {"kind": "plugin", "name": ECHO_PLUGIN, "form": {}}, ["image"], [self._noop_seq.to_bytes(8, "big")]
        if op == "echo":
            return {"kind": "plugin", "name": ECHO_PLUGIN, "form": {}}, ["image"], [body]
        if op == "tiny-inpaint":
            form = {**self.form, "prompt": "0"}
        elif op.startswith("sleep:"):
            form = {**self.form, "prompt": op[6:]}
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"kind": "inpaint", "name": "sleep", "form": form}, ["image", "mask"], [self.tiny_png, self.tiny_png]

    def _send(self, op: str, body: bytes) -> Any:
        """Queue one SUBMIT with ``want_result`` (as the classic /inpaint does); returns its pending request."""
        from lama_cleaner.plugins.distributed.wire import protocol as p

        task, names, blobs = self._task(op, body)
        header = {"task": {**task, "submitter": None, "idempotency_key": None}, "blobs": names, "want_result": True}
        return self.client.send_request(p.SUBMIT, header, blobs, timeout=self.timeout_s)

    def _collect(self, pending: Any, op: str, body: bytes) -> None:
        """Wait for a submitted task's ACCEPTED, then its result: the DONE the scheduler pushes right
        after the commit, or a FETCH when no DONE came (the client reconnected in between)."""
        from lama_cleaner.plugins.distributed.wire import protocol as p

        reply = self.client.wait_reply(pending)
        if reply.command != p.ACCEPTED:
            raise RuntimeError(f"SUBMIT -> {reply.command} {reply.header}")
        task_id = reply.header["task"]["id"]
        try:
            pushed = self.client.result(task_id) if pending.done_event.wait(self.timeout_s) else None
        finally:
            self.client.release_result(task_id)
        if pushed is not None:
            if pushed.header["status"] != "completed":
                raise RuntimeError(f"task {task_id} {pushed.header['status']}: {pushed.header.get('error')}")
            out = pushed
        else:
            status = self._wait_finished(task_id)
            if status != "completed":
                info = self.client.request(p.GET, {"task_id": task_id}, timeout=self.timeout_s)
                raise RuntimeError(f"task {task_id} {status}: {info.header.get('task', {}).get('error')}")
            out = self.client.request(p.FETCH, {"task_id": task_id}, timeout=self.timeout_s)
            if out.command != p.OUTPUT or not out.blobs:
                raise RuntimeError(f"FETCH -> {out.command} {out.header}")
        if op == "echo" and len(out.blobs[0]) != len(body):
            raise RuntimeError(f"echo of {len(body)} bytes came back as {len(out.blobs[0])}")

    def _run_one(self, op: str, body: bytes = b"") -> None:
        self._collect(self._send(op, body), op, body)

    def call(self, op: str = "noop", body: bytes = b"") -> None:
        self._run_one(op, body)

    def batch(self, op: str, count: int, body: bytes = b"") -> float:
        """Submit all ``count`` tasks, then wait for each result: the same drive as the peers get
        (Celery: ``delay()`` all, then ``get()`` each; the bare broker: send all, then receive).
        ``SchedulerClient.send_request`` queues the SUBMITs without a thread per task."""
        bodies = [_variant(body, i) for i in range(count)] if body else [b""] * count
        start = time.perf_counter()
        pendings = [self._send(op, b) for b in bodies]
        for pending, b in zip(pendings, bodies, strict=True):
            self._collect(pending, op, b)
        return time.perf_counter() - start

    def batch_threads(self, op: str, count: int, body: bytes = b"") -> float:
        """``count`` tasks from ``2 * nodes + 2`` threads, each one a blocking submit-and-wait as a
        web server's request thread does for ``/inpaint`` (more threads only add GIL contention)."""
        bodies = [_variant(body, i) for i in range(count)] if body else [b""] * count
        workers = max(1, min(count, 2 * self.nodes + 2))
        pool = self._pools.get(workers)
        if pool is None:
            pool = self._pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="bench-producer")
        start = time.perf_counter()
        futures = [pool.submit(self._run_one, op, b) for b in bodies]
        for fut in futures:
            fut.result(timeout=self.timeout_s * 2)
        return time.perf_counter() - start

    # ------------------------------------------------------------------ nodes
    def _node_count(self) -> int:
        from lama_cleaner.plugins.distributed.wire import protocol as p

        reply = self.client.request(p.NODES, {}, timeout=self.timeout_s)
        nodes = reply.header.get("nodes") or []
        return sum(1 for n in nodes if n.get("state") not in ("offline", None) and "cpu" in (n.get("queues") or []))

    def add_nodes(self, k: int) -> None:
        for _ in range(k):
            self.nodes += 1
            self.group.start(
                f"ours-node-{self.nodes}",
                [
                    *python_argv(
                        "-m",
                        "lama_cleaner",
                        "node",
                        "--scheduler",
                        self.endpoint,
                        "--queues",
                        "cpu",
                        "--device",
                        "cpu",
                        "--plugins",
                        self.node_plugins,
                        "--name",
                        f"bench-{self.nodes}",
                        "--log-level",
                        "WARNING",
                    ),
                ],
            )
        want = self.nodes

        def ready() -> bool:
            self.group.check_alive()
            return self._node_count() >= want

        wait_for(ready, 60 + 5 * k, f"{want} of our nodes registered")
        # Registered is not yet warm (the inference child loads the model on its first task): wait until
        # `want` sleeping tasks really run in parallel, which also proves every node takes work.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.batch("sleep:100", want) < 0.19:
                return
        raise TimeoutError(f"{want} of our nodes never ran tasks in parallel")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
        for name in [n for n in self.group.procs if n.startswith("ours-node-")]:
            self.group.stop(name, grace=15)
        self.group.stop("ours-scheduler", grace=15)


def _variant(body: bytes, i: int) -> bytes:
    """``body`` with its first 8 bytes replaced by ``i``: distinct payloads, so content-addressed
    storage cannot skip the work by de-duplicating identical uploads."""
    return i.to_bytes(8, "big") + body[8:]


def _tiny_png() -> bytes:
    import cv2
    import numpy as np

    ok, png = cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))
    if not ok:
        raise RuntimeError("could not encode a PNG")
    return png.tobytes()


def serve_scheduler(config_file: str, profile_out: str | None) -> int:
    """Child-process mode: run our Scheduler from ``config_file`` until SIGTERM.

    The scheduler runs in its own process (as ``lama-cleaner scheduler`` would) so that it does not
    share a GIL with the benchmark's client threads, just as Redis and the bare broker run apart.
    ``resource_class_of`` is the one routing lookup the standalone scheduler and the web server's
    executor use (``capabilities.task_resource_class`` via ``build_resource_class_of``). With
    ``profile_out`` the whole process (including the scheduler thread) is profiled with cProfile
    and the stats are written there.
    """
    import logging

    from lama_cleaner.plugins.config_loader import load_config
    from lama_cleaner.plugins.distributed.malloc_tuning import tune_malloc
    from lama_cleaner.plugins.distributed.scheduler.main import build_resource_class_of
    from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
    from lama_cleaner.plugins.manager import create_plugin_manager

    tune_malloc()  # as scheduler_main does
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s scheduler %(name)s: %(message)s")
    config = load_config(config_file)
    pm = create_plugin_manager(config.plugins)  # the distributed plugin itself starts nothing when registered
    resource_class_of = build_resource_class_of(pm, config)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    profilers: list[Any] = []
    if profile_out:
        # cProfile sees only the thread that enabled it, and one Profile object must not be shared by
        # threads: give every thread the scheduler starts its own, and merge them at the end.
        threading.setprofile(lambda *_: _profile_this_thread(profilers))
    scheduler = Scheduler(config, resource_class_of)
    scheduler.start()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        scheduler.close(timeout=10.0)
        if profilers:
            import pstats

            for prof in profilers:
                prof.disable()  # a no-op for the ones owned by threads that already ended
            stats = pstats.Stats(profilers[0])
            for prof in profilers[1:]:
                stats.add(prof)
            stats.dump_stats(profile_out)
    return 0


def _profile_this_thread(profilers: list[Any]) -> None:
    """First profile event of a new thread: replace this hook by a cProfile of the thread's own."""
    import cProfile

    sys.setprofile(None)
    prof = cProfile.Profile()
    profilers.append(prof)
    prof.enable()


# ============================================================================ measurements
def measure_core(runner: Any, sizes: Sizes) -> dict[str, Any]:
    """No-op throughput, round-trip latency, 1 MB payload rate and 200 ms-model throughput (2 nodes)."""
    out: dict[str, Any] = {"system": runner.name, "label": runner.label, "nodes": 2}
    runner.batch("noop", sizes.noop_warmup)
    cpu_before = _cpu_by_role(runner)
    elapsed = runner.batch("noop", sizes.noop_tasks)
    cpu_after = _cpu_by_role(runner)
    out["noop_tasks"] = sizes.noop_tasks
    out["noop_tasks_per_s"] = rate(sizes.noop_tasks, elapsed)
    out["noop_cpu_ms_per_task"] = {
        role: (cpu_after[role] - cpu_before[role]) * 1000 / sizes.noop_tasks for role in cpu_before
    }
    if hasattr(runner, "batch_threads"):  # ours: also the way /inpaint request threads drive it
        out["noop_tasks_per_s_threads"] = rate(sizes.noop_tasks, runner.batch_threads("noop", sizes.noop_tasks))
    samples = time_calls(lambda: runner.call("noop"), sizes.round_trips, warmup=max(3, sizes.round_trips // 10))
    out["round_trip_ms"] = {k: (v * 1000 if k != "n" else v) for k, v in summarize(samples).items()}
    if getattr(runner, "has_tiny_inpaint", False):  # ours: the same through the real inpaint pipeline
        runner.batch("tiny-inpaint", sizes.noop_warmup)
        out["tiny_inpaint_tasks_per_s"] = rate(sizes.noop_tasks, runner.batch("tiny-inpaint", sizes.noop_tasks))
        samples = time_calls(lambda: runner.call("tiny-inpaint"), sizes.round_trips, warmup=3)
        out["tiny_inpaint_round_trip_ms"] = {k: (v * 1000 if k != "n" else v) for k, v in summarize(samples).items()}
    body = os.urandom(sizes.payload_bytes)
    runner.batch("echo", 2, body)
    elapsed = runner.batch("echo", sizes.payload_tasks, body)
    out["payload_bytes"] = sizes.payload_bytes
    out["payload_tasks"] = sizes.payload_tasks
    out["payload_mb_per_s"] = sizes.payload_tasks * sizes.payload_bytes / MB / elapsed
    count = sizes.sleep_tasks_per_node * 2
    elapsed = runner.batch(f"sleep:{SLEEP_MS}", count)
    out["sleep_tasks_per_s"] = rate(count, elapsed)
    out["sleep_ideal_tasks_per_s"] = 2 * 1000 / SLEEP_MS
    return out


def _cpu_by_role(runner: Any) -> dict[str, float]:
    """CPU seconds so far of each part of a system, plus the benchmark process (the producer side)."""
    out = {role: runner.group.cpu_s(prefix) for role, prefix in runner.cpu_roles.items()}
    out["client (this process)"] = self_cpu_s()
    return out


def measure_scaling(runner: Any, sizes: Sizes, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Throughput of the 200 ms model as nodes are added (1, 2, 4, ...), nodes kept between steps."""
    rows: list[dict[str, Any]] = []
    base: float | None = None
    for n in sizes.scaling_nodes:
        missing = n - runner.nodes
        if missing > 0:
            t0 = time.perf_counter()
            runner.add_nodes(missing)
            log(f"  {runner.name}: {n} node(s) up ({time.perf_counter() - t0:.1f}s)")
        count = sizes.sleep_tasks_per_node * n
        elapsed = runner.batch(f"sleep:{SLEEP_MS}", count)
        tput = rate(count, elapsed)
        base = base or tput
        rows.append(
            {
                "system": runner.name,
                "nodes": n,
                "tasks": count,
                "seconds": elapsed,
                "tasks_per_s": tput,
                "ideal_tasks_per_s": n * 1000 / SLEEP_MS,
                "speedup": tput / base,
                "scaling_vs_n": tput / base / n,
            }
        )
    return rows


# ============================================================================ /inpaint: classic vs distributed
def _test_image(size: int = 512) -> tuple[bytes, bytes]:
    """A deterministic 512x512 PNG and a mask with a filled rectangle in the middle."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.stack([(xx * 255 // size), (yy * 255 // size), ((xx + yy) * 127 // size)], axis=-1).astype(np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 3 : 2 * size // 3, size // 4 : 3 * size // 4] = 255
    ok1, png = cv2.imencode(".png", img)
    ok2, mpng = cv2.imencode(".png", mask)
    if not (ok1 and ok2):
        raise RuntimeError("could not encode the test image")
    return png.tobytes(), mpng.tobytes()


def measure_inpaint(sizes: Sizes, work_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """p50/p95 of ``POST /inpaint`` (cv2, 512x512) on a classic and a distributed server, interleaved."""
    import requests

    from lama_cleaner.inpaint_request import default_form
    from tests.support.server_process import ServerProcess

    form = default_form(
        hdStrategy="Resize",
        hdStrategyResizeLimit="1080",
        hdStrategyCropTrigerSize="512",
        hdStrategyCropMargin="128",
        sdSeed="42",
        paintByExampleSeed="42",
    )
    image, mask = _test_image()
    cfg_path = work_dir / "inpaint-distributed.json"
    base = consecutive_free_ports(3)
    cfg_path.write_text(
        json.dumps(
            {
                "distributed": {
                    "scheduler_bind": f"tcp://127.0.0.1:{base}",
                    "data_dir": str(work_dir / "inpaint-journal"),
                    "local_nodes": 1,
                }
            }
        )
    )
    classic = ServerProcess(ready_timeout=90)
    distributed = ServerProcess(["--plugins", "distributed", "--config", str(cfg_path)], ready_timeout=90)
    out: dict[str, Any] = {"image": "512x512 PNG", "model": "cv2"}
    with classic, distributed:
        session = requests.Session()

        def post(url: str) -> float:
            files = {"image": ("image.png", image, "image/png"), "mask": ("mask.png", mask, "image/png")}
            t0 = time.perf_counter()
            resp = session.post(url + "/inpaint", data=form, files=files, timeout=sizes.timeout_s)
            elapsed = time.perf_counter() - t0
            if resp.status_code != 200 or not resp.content:
                raise RuntimeError(f"POST {url}/inpaint -> {resp.status_code}: {resp.text[:300]}")
            return elapsed

        # Warm up both (model load, first node hand-shake), then interleave so drift hits both equally.
        for _ in range(3):
            post(classic.url)
            post(distributed.url)
        classic_s: list[float] = []
        dist_s: list[float] = []
        for _ in range(sizes.inpaint_requests):
            classic_s.append(post(classic.url))
            dist_s.append(post(distributed.url))
        same = (
            session.post(
                classic.url + "/inpaint",
                data=form,
                files={"image": ("i.png", image, "image/png"), "mask": ("m.png", mask, "image/png")},
            ).content
            == session.post(
                distributed.url + "/inpaint",
                data=form,
                files={"image": ("i.png", image, "image/png"), "mask": ("m.png", mask, "image/png")},
            ).content
        )
    c = {k: (v * 1000 if k != "n" else v) for k, v in summarize(classic_s).items()}
    d = {k: (v * 1000 if k != "n" else v) for k, v in summarize(dist_s).items()}
    out.update(
        classic_ms=c,
        distributed_ms=d,
        added_p50_ms=d["p50"] - c["p50"],
        added_p95_ms=d["p95"] - c["p95"],
        identical_bytes=same,
    )
    log(f"  /inpaint classic p50 {c['p50']:.1f} ms, distributed p50 {d['p50']:.1f} ms, identical bytes: {same}")
    return out


# ============================================================================ driver
def run_system(make: Callable[[], Any], sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any] | str:
    """Start one system with 2 nodes, measure it, stop it. Returns the row, or a skip/crash reason."""
    runner = None
    try:
        t0 = time.perf_counter()
        runner = make()
        runner.add_nodes(2)
        log(f"  {runner.name}: started with 2 nodes in {time.perf_counter() - t0:.1f}s")
        row = measure_core(runner, sizes)
        log(
            f"  {runner.name}: {row['noop_tasks_per_s']:.0f} no-op tasks/s, round trip p50 "
            f"{row['round_trip_ms']['p50']:.2f} ms, {row['payload_mb_per_s']:.0f} MB/s"
        )
        return row
    except RunnerUnavailable as exc:
        return f"skipped: {exc}"
    finally:
        if runner is not None:
            runner.close()


def build_targets(
    core: dict[str, Any], scaling: list[dict[str, Any]], inpaint: dict[str, Any] | None, sizes: Sizes
) -> list[Target]:
    ours = core.get("ours") if isinstance(core.get("ours"), dict) else None
    celery = core.get("celery") if isinstance(core.get("celery"), dict) else None
    lb = core.get("zmq-lb") if isinstance(core.get("zmq-lb"), dict) else None

    def get(row: dict[str, Any] | None, *keys: str) -> float | None:
        cur: Any = row
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                return None
            cur = cur[k]
        return cur

    targets = [
        Target(
            "throughput ours / Celery",
            ratio(get(ours, "noop_tasks_per_s"), get(celery, "noop_tasks_per_s")),
            ">=",
            5.0,
            "x",
            "no-op tasks/s, 2 nodes each",
        ),
        Target(
            "round-trip p50 ours / Celery",
            ratio(get(ours, "round_trip_ms", "p50"), get(celery, "round_trip_ms", "p50")),
            "<=",
            0.2,
            "x",
            "sequential submit-and-wait",
        ),
        Target(
            "throughput ours / bare broker",
            ratio(get(ours, "noop_tasks_per_s"), get(lb, "noop_tasks_per_s")),
            ">=",
            0.5,
            "x",
            "bare broker has no persistence",
        ),
        Target(
            "/inpaint added p50", get(inpaint, "added_p50_ms"), "<=", 5.0, "ms", "cv2 512x512, distributed - classic"
        ),
    ]
    ours_scaling = [r for r in scaling if r["system"] == "ours"]
    if not ours_scaling:
        targets.append(Target("scaling at N nodes / N", None, ">=", 0.9, "", "our system not measured"))
    for row in ours_scaling:
        if row["nodes"] == 1:
            continue
        targets.append(
            Target(
                f"scaling {row['nodes']} nodes / N",
                row["scaling_vs_n"],
                ">=",
                0.9,
                "",
                f"speedup {row['speedup']:.2f} vs 1 node",
            )
        )
    return targets


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_distributed.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-size smoke run (well under a minute)")
    parser.add_argument(
        "--only", default="core,scaling,inpaint", help="comma list of sections: core, scaling, inpaint (default: all)"
    )
    parser.add_argument(
        "--systems",
        default=None,
        help="comma list of systems for `core`: ours, zmq-lb, celery (prefork, the targets' "
        "peer), celery-solo (reference only). Default: all four; --quick leaves out celery-solo",
    )
    parser.add_argument("--scaling-nodes", default=None, help="e.g. 1,2,4,8,16 (overrides the mode's list)")
    parser.add_argument(
        "--profile", action="store_true", help="run our scheduler under cProfile and print its top functions"
    )
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary folder with process logs")
    parser.add_argument("--serve-scheduler", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_scheduler:
        return serve_scheduler(args.serve_scheduler, args.profile_out)

    sizes = QUICK if args.quick else FULL
    if args.scaling_nodes:
        sizes = Sizes(**{**asdict(sizes), "scaling_nodes": tuple(int(x) for x in args.scaling_nodes.split(","))})
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    default_systems = "ours,zmq-lb,celery" if args.quick else "ours,zmq-lb,celery,celery-solo"
    systems = [s.strip() for s in (args.systems or default_systems).split(",") if s.strip()]
    work_dir = Path(tempfile.mkdtemp(prefix="lc-bench-distributed-"))
    started = time.perf_counter()
    crashed: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C so the process group is stopped.
    signal.signal(signal.SIGTERM, _interrupt)

    core: dict[str, Any] = {}
    scaling: list[dict[str, Any]] = []
    inpaint: dict[str, Any] | None = None
    profile_path = work_dir / "scheduler.prof" if args.profile else None
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
    }
    log(f"bench_distributed ({'quick' if args.quick else 'full'}) - logs in {work_dir}")
    try:
        with ProcessGroup(work_dir / "logs", env=env) as group:
            makers: dict[str, Callable[[], Any]] = {
                "ours": lambda: OursRunner(group, work_dir / "ours", sizes.timeout_s, profile_path),
                "zmq-lb": lambda: ZmqLBRunner(group, sizes.timeout_s),
                "celery": lambda: CeleryRunner(group, work_dir / "redis", sizes.timeout_s),
                "celery-solo": lambda: CeleryRunner(group, work_dir / "redis-solo", sizes.timeout_s, pool="solo"),
            }
            if "core" in sections:
                log("[core] 2 nodes per system")
                for name in systems:
                    try:
                        core[name] = run_system(makers[name], sizes, log)
                    except Exception as exc:  # noqa: BLE001 - report, keep measuring the others
                        crashed.append(f"core/{name}: {exc!r}")
                        core[name] = f"crashed: {exc}"
                        traceback.print_exc()
                    if isinstance(core[name], str):
                        log(f"  {name}: {core[name]}")
            if "scaling" in sections:
                log(f"[scaling] {SLEEP_MS} ms model, nodes {list(sizes.scaling_nodes)}")
                runner = None
                try:
                    runner = makers["ours"]()
                    scaling = measure_scaling(runner, sizes, log)
                except RunnerUnavailable as exc:
                    log(f"  ours: skipped: {exc}")
                except Exception as exc:  # noqa: BLE001
                    crashed.append(f"scaling: {exc!r}")
                    traceback.print_exc()
                finally:
                    if runner is not None:
                        runner.close()
            if "inpaint" in sections:
                log("[inpaint] POST /inpaint cv2 512x512: classic vs --plugins distributed")
                try:
                    inpaint = measure_inpaint(sizes, work_dir, log)
                except Exception as exc:  # noqa: BLE001
                    crashed.append(f"inpaint: {exc!r}")
                    traceback.print_exc()
    except KeyboardInterrupt:
        log("interrupted: every started process was stopped")
        return 130

    # ------------------------------------------------------------------ report
    log("")
    rows = []
    for name, row in core.items():
        if isinstance(row, dict):
            rows.append(
                {
                    "system": row["label"],
                    "no-op tasks/s": row["noop_tasks_per_s"],
                    "RT p50 ms": row["round_trip_ms"]["p50"],
                    "RT p95 ms": row["round_trip_ms"]["p95"],
                    "1MB MB/s": row["payload_mb_per_s"],
                    f"{SLEEP_MS}ms-model tasks/s": row["sleep_tasks_per_s"],
                }
            )
            if row.get("noop_tasks_per_s_threads") is not None:
                rows.append(
                    {
                        "system": "  same, one blocking thread per task (as /inpaint)",
                        "no-op tasks/s": row["noop_tasks_per_s_threads"],
                        "RT p50 ms": None,
                        "RT p95 ms": None,
                        "1MB MB/s": None,
                        f"{SLEEP_MS}ms-model tasks/s": None,
                    }
                )
            if row.get("tiny_inpaint_tasks_per_s") is not None:
                rt = row["tiny_inpaint_round_trip_ms"]
                rows.append(
                    {
                        "system": "  tiny inpaint (8x8 PNG, real pipeline) instead",
                        "no-op tasks/s": row["tiny_inpaint_tasks_per_s"],
                        "RT p50 ms": rt["p50"],
                        "RT p95 ms": rt["p95"],
                        "1MB MB/s": None,
                        f"{SLEEP_MS}ms-model tasks/s": None,
                    }
                )
        else:
            rows.append(
                {
                    "system": name,
                    "no-op tasks/s": None,
                    "RT p50 ms": None,
                    "RT p95 ms": None,
                    "1MB MB/s": None,
                    f"{SLEEP_MS}ms-model tasks/s": None,
                    "note": row,
                }
            )
    if rows:
        log(format_table(rows, title="Dispatch overhead, 2 nodes each (loopback)"))
        log("")
    cpu_rows = [
        {"system": name, **{k: v for k, v in row["noop_cpu_ms_per_task"].items()}}
        for name, row in core.items()
        if isinstance(row, dict)
    ]
    if cpu_rows:
        for row in cpu_rows:
            row["total"] = sum(v for k, v in row.items() if k != "system")
        log(format_table(cpu_rows, title="CPU ms per no-op task, by process (2 cores total; lower is better)"))
        log("")
    if scaling:
        log(
            format_table(
                [
                    {
                        "nodes": r["nodes"],
                        "tasks": r["tasks"],
                        "tasks/s": r["tasks_per_s"],
                        "ideal": r["ideal_tasks_per_s"],
                        "speedup": r["speedup"],
                        "speedup/N": r["scaling_vs_n"],
                    }
                    for r in scaling
                ],
                title=f"Scaling, simulated {SLEEP_MS} ms model (ours)",
            )
        )
        log("")
    if inpaint:
        log(
            format_table(
                [
                    {"mode": "classic", **{k: inpaint["classic_ms"][k] for k in ("p50", "p95", "mean")}},
                    {"mode": "distributed", **{k: inpaint["distributed_ms"][k] for k in ("p50", "p95", "mean")}},
                ],
                title=f"POST /inpaint cv2 512x512 ms (n={sizes.inpaint_requests} each, interleaved)",
            )
        )
        log("")
    targets = build_targets(core, scaling, inpaint, sizes)
    log(
        format_table(
            [t.row() for t in targets], columns=["target", "measured", "goal", "verdict", "note"], title="Targets"
        )
    )
    path = write_results(
        BENCH_NAME,
        {
            "mode": "quick" if args.quick else "full",
            "sizes": asdict(sizes),
            "core": core,
            "scaling": scaling,
            "inpaint": inpaint,
            "targets": [t.to_json() for t in targets],
            "crashed": crashed,
            "wall_s": time.perf_counter() - started,
        },
        Path(args.results_dir),
    )
    log(f"\nJSON: {path}")
    if profile_path and profile_path.exists():
        import pstats

        log("\nscheduler profile (cumulative, top 25):")
        pstats.Stats(str(profile_path)).sort_stats("cumulative").print_stats(25)
    if args.keep_logs or crashed:
        log(f"logs kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    if crashed:
        log("crashed: " + "; ".join(crashed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
