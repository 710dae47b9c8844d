#!/usr/bin/env python3
"""What the ``monitor`` plugin costs: dispatch throughput and ``/inpaint`` p50, without and with it, side by side.

Two deployments run at the same time, identical but for the monitor; the benchmark drives them in turns
(off, on, off, on, ...), so drift of a shared, busy machine lands on both, and reports the median of the
rounds:

- **dispatch**: ``lama-cleaner scheduler`` (standalone, its own SQLite journal) with two
  ``lama-cleaner node`` processes, driven by the product's ``SchedulerClient`` from this process: each round
  submits ``--tasks`` no-op tasks (the ``BenchEcho`` image plugin, 8 bytes in and out) at once and waits for
  every result. With the monitor, every process logs through loguru (task path at INFO), the scheduler
  evaluates the alert rules every second and serves ``metrics_port``, which a scraper thread here reads
  every second (a Prometheus scraping that often, and an open dashboard). The CPU time each part spends per
  task (scheduler; nodes with their inference children) is reported too: on a shared machine it is steadier
  than throughput, and it shows where the monitor's cost lands.
- **/inpaint**: ``lama-cleaner --model cv2 --device cpu --plugins distributed[,monitor]`` with one local node
  each; requests (512x512, the front end's form) go in pairs, one to each server right after the other, the
  first of a pair alternating; p50 of each, and the median of the pairs' differences (steadier when the
  machine's load drifts). With the monitor, ``/metrics`` is scraped every second too.

Targets (issue 13): dispatch throughput drops by at most 3 % (ratio on/off >= 0.97), and ``/inpaint`` p50
grows by at most 0.3 ms. Prints the tables, writes JSON to ``benchmarks/results/``.

    python benchmarks/bench_monitor_overhead.py                 # ~3 min on 2 cores
    python benchmarks/bench_monitor_overhead.py --quick         # ~1 min
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_inpaint import make_job, post  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    ProcessGroup,
    Target,
    consecutive_free_ports,
    format_table,
    free_port,
    port_open,
    python_argv,
    rate,
    ratio,
    summarize,
    wait_for,
    write_results,
)
from tests.support.server_process import ServerProcess  # noqa: E402

BENCH_NAME = "bench_monitor_overhead"
PLUGINS = "tests.support.fake_models,benchmarks.bench_fakes"
MODES = ("off", "on")


class Scraper:
    """GETs ``url`` every ``interval_s`` on a thread, as Prometheus (or an open dashboard) would; counts replies."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.scrapes = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                ok = requests.get(self.url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            self.scrapes += ok
            self.errors += not ok

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# ============================================================================ dispatch
class Dispatch:
    """A standalone scheduler, two nodes and a SchedulerClient; ``monitor`` adds the plugin to every process."""

    def __init__(
        self, group: ProcessGroup, work: Path, mode: str, monitor: bool, timeout_s: float, logs: dict[str, Any]
    ) -> None:
        from lama_cleaner.config import Config
        from lama_cleaner.plugins.distributed.producer.client import SchedulerClient

        self.group = group
        self.mode = mode
        self.timeout_s = timeout_s
        work.mkdir(parents=True, exist_ok=True)
        base = consecutive_free_ports(3)
        self.endpoint = f"tcp://127.0.0.1:{base}"
        plugins = PLUGINS + (",monitor" if monitor else "")
        settings: dict[str, Any] = {
            "distributed": {
                "scheduler_bind": self.endpoint,
                "data_dir": str(work / "journal"),
                "max_queued": 100000,
                "max_queued_per_queue": 100000,
            },
            "monitor": {"evaluation_interval_s": 1.0, **logs},
        }
        config_file = work / "config.json"
        config_file.write_text(json.dumps(settings))
        argv = ["scheduler", "--config", str(config_file), "--plugins", plugins]
        self.metrics_url: str | None = None
        if monitor:
            port = free_port()
            argv += ["--metrics-port", str(port)]
            self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.name = f"{self.mode}-scheduler"
        group.start(self.name, python_argv("-m", "lama_cleaner", *argv))
        wait_for(lambda: port_open(base) or not group.alive(self.name), 180, f"the {self.mode} scheduler listening")
        group.check_alive(self.name)
        for i in (1, 2):
            node = [
                "node",
                "--scheduler",
                self.endpoint,
                "--queues",
                "cpu",
                "--device",
                "cpu",
                "--config",
                str(config_file),
                "--plugins",
                plugins,
                "--name",
                f"{self.mode}-{i}",
            ]
            group.start(f"{self.mode}-node-{i}", python_argv("-m", "lama_cleaner", *node))
        self.config = Config()
        self.client = SchedulerClient(self.endpoint, self.config, request_timeout_s=timeout_s)
        self._seq = 0
        wait_for(self._two_nodes, 240, f"two {self.mode} nodes registered")
        self.scraper = Scraper(self.metrics_url).start() if self.metrics_url else None

    def _two_nodes(self) -> bool:
        from lama_cleaner.plugins.distributed.wire import protocol as p

        self.group.check_alive()
        nodes = self.client.request(p.NODES, {}, timeout=self.timeout_s).header.get("nodes") or []
        return sum(1 for n in nodes if n.get("state") in ("idle", "busy")) >= 2

    def _submit(self) -> Any:
        from benchmarks.bench_fakes import ECHO_PLUGIN
        from lama_cleaner.plugins.distributed.wire import protocol as p

        self._seq += 1
        task = {"kind": "plugin", "name": ECHO_PLUGIN, "form": {}, "submitter": None, "idempotency_key": None}
        header = {"task": task, "blobs": ["image"], "want_result": True}
        return self.client.send_request(p.SUBMIT, header, [self._seq.to_bytes(8, "big")], timeout=self.timeout_s)

    def _collect(self, pending: Any) -> None:
        from lama_cleaner.plugins.distributed.wire import protocol as p

        reply = self.client.wait_reply(pending)
        if reply.command != p.ACCEPTED:
            raise RuntimeError(f"SUBMIT -> {reply.command} {reply.header}")
        task_id = reply.header["task"]["id"]
        try:
            if not pending.done_event.wait(self.timeout_s):
                raise TimeoutError(f"no result for task {task_id} within {self.timeout_s} s")
            done = self.client.result(task_id)
        finally:
            self.client.release_result(task_id)
        if done is None or done.header["status"] != "completed":
            raise RuntimeError(f"task {task_id}: {done.header if done else 'no result'}")

    def round(self, tasks: int) -> float:
        """Tasks per second for ``tasks`` no-op tasks submitted at once."""
        start = time.perf_counter()
        for pending in [self._submit() for _ in range(tasks)]:
            self._collect(pending)
        return rate(tasks, time.perf_counter() - start)

    def close(self) -> None:
        if self.scraper is not None:
            self.scraper.stop()
        self.client.close()


def measure_dispatch(
    work: Path,
    tasks: int,
    rounds: int,
    warmup: int,
    timeout_s: float,
    logs: dict[str, Any],
    log: Callable,
    same: bool = False,
) -> dict:
    with ProcessGroup(work / "logs") as group:
        watched = {mode: mode == "on" and not same for mode in MODES}
        systems = {mode: Dispatch(group, work / mode, mode, watched[mode], timeout_s, logs) for mode in MODES}
        try:
            for system in systems.values():
                system.round(warmup)
            per_round: dict[str, list[float]] = {mode: [] for mode in MODES}
            cpu = {(mode, part): 0.0 for mode in MODES for part in ("scheduler", "node")}
            for i in range(rounds):
                order = MODES if i % 2 == 0 else MODES[::-1]  # alternate who goes first
                for mode in order:
                    before = {part: group.cpu_s(f"{mode}-{part}") for part in ("scheduler", "node")}
                    per_round[mode].append(systems[mode].round(tasks))
                    for part in ("scheduler", "node"):
                        cpu[(mode, part)] += group.cpu_s(f"{mode}-{part}") - before[part]
                log(f"dispatch round {i + 1}/{rounds}: " + ", ".join(f"{m} {per_round[m][-1]:.0f}/s" for m in MODES))
            scraper = systems["on"].scraper
            scrapes = (scraper.scrapes, scraper.errors) if scraper else (0, 0)
        finally:
            for system in systems.values():
                system.close()
    ms_per_task = 1000 / (rounds * tasks)
    rows = [
        {
            "mode": m,
            "rounds": rounds,
            "tasks": tasks,
            "median_tasks_per_s": statistics.median(v),
            "min": min(v),
            "max": max(v),
            "scheduler_cpu_ms_per_task": cpu[(m, "scheduler")] * ms_per_task,
            "nodes_cpu_ms_per_task": cpu[(m, "node")] * ms_per_task,
        }
        for m, v in per_round.items()
    ]
    return {"rows": rows, "per_round": per_round, "scrapes": scrapes[0], "scrape_errors": scrapes[1]}


# ============================================================================ /inpaint
def measure_inpaint(
    work: Path, requests_per_round: int, rounds: int, timeout_s: float, log: Callable, same: bool = False
) -> dict:
    job = make_job(512, 512)
    servers: dict[str, ServerProcess] = {}
    scraper: Scraper | None = None
    try:
        for mode in MODES:
            base = consecutive_free_ports(3)
            work.mkdir(parents=True, exist_ok=True)
            config = work / f"inpaint-{mode}.toml"
            config.write_text(
                f'[distributed]\nscheduler_bind = "tcp://127.0.0.1:{base}"\ndata_dir = "{work / mode / "journal"}"\n'
                "local_nodes = 1\n"
            )
            plugins = "distributed,monitor" if mode == "on" and not same else "distributed"
            servers[mode] = ServerProcess(["--plugins", plugins, "--config", str(config)], ready_timeout=120).start()
        for mode, server in servers.items():
            wait_for(lambda server=server: post(server.url, job, timeout_s), 120, f"a first {mode} /inpaint reply")
            for _ in range(5):
                post(server.url, job, timeout_s)
        scraper = Scraper(servers["on"].url + "/metrics").start()
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        paired: list[float] = []  # on - off, for two requests sent one right after the other
        for i in range(rounds):
            for j in range(requests_per_round):
                order = MODES if (i + j) % 2 == 0 else MODES[::-1]  # alternate who goes first
                sample = {mode: post(servers[mode].url, job, timeout_s) * 1000 for mode in order}
                for mode in MODES:
                    latencies[mode].append(sample[mode])
                paired.append(sample["on"] - sample["off"])
            log(f"/inpaint round {i + 1}/{rounds}: " + ", ".join(
                f"{m} p50 {statistics.median(latencies[m]):.2f} ms" for m in MODES))  # fmt: skip
        scraper.stop()
    finally:
        if scraper is not None:
            scraper.stop()
        for server in servers.values():
            server.stop()
    rows = [{"mode": m, **summarize(v)} for m, v in latencies.items()]
    return {"rows": rows, "paired_median_ms": statistics.median(paired), "scrapes": scraper.scrapes if scraper else 0}


# ============================================================================ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tasks (~1 min)")
    parser.add_argument("--tasks", type=int, default=None, help="no-op tasks per dispatch round (default 400)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per mode (default 6)")
    parser.add_argument("--requests", type=int, default=None, help="/inpaint requests per round (default 30)")
    parser.add_argument("--only", default="dispatch,inpaint", help="dispatch and/or inpaint")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-task/request timeout in seconds")
    parser.add_argument(
        "--log-level", default="INFO", help="monitor.log_level of the monitored deployment (default: INFO)"
    )
    parser.add_argument(
        "--task-path-level", default="INFO", help="monitor.task_path_level of the monitored deployment (default: INFO)"
    )
    parser.add_argument(
        "--task-lines-per-s",
        type=int,
        default=None,
        help="monitor.task_lines_per_s of the monitored deployment (default: the setting's default; 0: every line)",
    )
    parser.add_argument(
        "--same",
        action="store_true",
        help="calibration: the 'on' deployments run without the monitor too, so the tables show the noise floor",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' output folder")
    args = parser.parse_args(argv)
    tasks = args.tasks or (150 if args.quick else 400)
    rounds = args.rounds or (3 if args.quick else 6)
    per_round = args.requests or (15 if args.quick else 30)
    only = {part.strip() for part in args.only.split(",")}
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    settings = {
        "tasks": tasks,
        "rounds": rounds,
        "requests_per_round": per_round,
        "log_level": args.log_level,
        "task_path_level": args.task_path_level,
        "task_lines_per_s": args.task_lines_per_s,
        "same": args.same,
    }
    out: dict[str, Any] = {"settings": settings}
    targets: list[Target] = []
    tmp = tempfile.mkdtemp(prefix="bench-monitor-") if args.keep_logs else None
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as scratch:
        work = Path(tmp or scratch)
        if "dispatch" in only:
            warmup = max(50, tasks // 4)
            logs: dict[str, Any] = {"log_level": args.log_level, "task_path_level": args.task_path_level}
            if args.task_lines_per_s is not None:
                logs["task_lines_per_s"] = args.task_lines_per_s
            dispatch = measure_dispatch(work / "dispatch", tasks, rounds, warmup, args.timeout, logs, log, args.same)
            out["dispatch"] = dispatch
            print(format_table(dispatch["rows"], title="dispatch throughput, no-op tasks, 2 nodes (tasks/s)"))
            medians = {r["mode"]: r["median_tasks_per_s"] for r in dispatch["rows"]}
            cpu = {r["mode"]: r["scheduler_cpu_ms_per_task"] for r in dispatch["rows"]}
            print(f"scheduler CPU per task added by the monitor: {cpu['on'] - cpu['off']:.3f} ms")
            targets.append(
                Target(
                    "dispatch throughput with / without the monitor",
                    ratio(medians["on"], medians["off"]),
                    ">=",
                    0.97,
                    note=f"medians of {rounds} rounds; {dispatch['scrapes']} scrapes of the scheduler's port",
                )
            )
        if "inpaint" in only:
            inpaint = measure_inpaint(work / "inpaint", per_round, rounds, args.timeout, log, args.same)
            out["inpaint"] = inpaint
            print()
            print(format_table(inpaint["rows"], title="POST /inpaint, cv2 512x512, sequential (ms)"))
            p50 = {r["mode"]: r["p50"] for r in inpaint["rows"]}
            targets.append(
                Target(
                    "/inpaint p50 added by the monitor",
                    p50["on"] - p50["off"],
                    "<=",
                    0.3,
                    "ms",
                    note=f"{rounds * per_round} requests per mode, sent in pairs (median of on - off per pair: "
                    f"{inpaint['paired_median_ms']:.2f} ms); /metrics scraped every second",
                )
            )
    if tmp:
        log(f"process output kept in {tmp}")
    print()
    print(format_table([t.row() for t in targets], title="targets (issue 13)"))
    out["targets"] = [t.to_json() for t in targets]
    path = write_results(BENCH_NAME, out)
    print(f"\nJSON written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
