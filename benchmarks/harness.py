"""Shared helpers for the benchmark scripts: statistics, subprocesses, tables, targets and JSON.

Why a module of its own: every benchmark in this folder must print a table a person can read,
write JSON a script can compare, start only loopback processes and always stop them, and
compare numbers against targets the same way. Keeping that here lets each script contain only
what it measures. Nothing here knows about Lama Cleaner.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) with linear interpolation between closest ranks.

    Same definition as ``numpy.percentile``'s default, written out so the harness needs no numpy.
    """
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Count, mean, min, p50, p95, p99 and max of a sample (same unit as the sample)."""
    if not values:
        raise ValueError("summary of an empty sample")
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        "min": float(min(values)),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": float(max(values)),
    }


class PooledRounds:
    """Rounds of a side-by-side benchmark, pooled per key: each server is measured in turn, round after
    round (so load drift on a shared box hits all of them), and a key's rounds count as one sample:
    their latencies joined, its rate the requests over the summed wall time."""

    def __init__(self) -> None:
        self._latencies: dict[tuple[Any, ...], list[float]] = {}
        self._walls: dict[tuple[Any, ...], list[tuple[int, float]]] = {}

    def add(self, key: tuple[Any, ...], stats: Mapping[str, Any]) -> None:
        """One round's ``measure`` result (``latencies_ms``, ``n``, ``wall_s``) under ``key``."""
        self._latencies.setdefault(key, []).extend(stats["latencies_ms"])
        self._walls.setdefault(key, []).append((int(stats["n"]), float(stats["wall_s"])))

    def rows(self, fields: Sequence[str]) -> list[dict[str, Any]]:
        """A row per key, in the order keys were first added: the key's parts named by ``fields``, then
        ``n``, ``p50``, ``p95`` (ms) and ``req_per_s``."""
        rows = []
        for key, latencies in self._latencies.items():
            done = sum(n for n, _ in self._walls[key])
            wall = sum(w for _, w in self._walls[key])
            stats = summarize(latencies)
            rows.append(
                dict(zip(fields, key, strict=True))
                | {"n": done, "p50": stats["p50"], "p95": stats["p95"], "req_per_s": done / wall}
            )
        return rows


def rate(count: int, seconds: float) -> float:
    """Events per second; ``inf`` would hide a broken clock, so zero time is an error."""
    if seconds <= 0:
        raise ValueError(f"non-positive duration {seconds}")
    return count / seconds


def time_calls(fn: Callable[[], Any], repeat: int, warmup: int = 0) -> list[float]:
    """Call ``fn`` ``warmup`` times unmeasured, then ``repeat`` times; return each call's seconds."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` or None when either side is missing or the divisor is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


# ----------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One goal: ``value <op> threshold`` where op is ``>=`` or ``<=``.

    ``value`` None means the measurement could not be taken (a peer missing, a part crashed); the
    verdict is then ``SKIP`` with the reason, never a silent pass.
    """

    name: str
    value: float | None
    op: str
    threshold: float
    unit: str = ""
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "SKIP"
        if self.op == ">=":
            return "PASS" if self.value >= self.threshold else "MISS"
        if self.op == "<=":
            return "PASS" if self.value <= self.threshold else "MISS"
        raise ValueError(f"unknown comparison {self.op!r}")

    def row(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "measured": self._measured() + (f" {self.unit}" if self.unit and self.value is not None else ""),
            "goal": f"{self.op} {fmt_num(self.threshold)}" + (f" {self.unit}" if self.unit else ""),
            "verdict": self.verdict,
            "note": self.note,
        }

    def _measured(self) -> str:
        """Like ``fmt_num``, with more digits when rounding would print a miss as the threshold itself."""
        text = fmt_num(self.value)
        if isinstance(self.value, float) and self.value != self.threshold:
            try:
                if float(text.replace(",", "")) == self.threshold:
                    text = f"{self.value:.6g}"
            except ValueError:
                pass
        return text

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


# ----------------------------------------------------------------------------- formatting
def fmt_num(value: Any) -> str:
    """Numbers with 3 significant-ish digits, ``-`` for missing values."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        mag = abs(value)
        if mag >= 1000:
            return f"{value:,.0f}"
        if mag >= 100:
            return f"{value:.1f}"
        if mag >= 1:
            return f"{value:.2f}"
        if mag == 0:
            return "0"
        return f"{value:.3g}"
    return str(value)


def format_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str = "") -> str:
    """A plain-text table with a header row; numbers right-aligned, text left-aligned."""
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    cells = [[fmt_num(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(list(columns)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


# ----------------------------------------------------------------------------- environment + JSON
def environment() -> dict[str, Any]:
    """What the numbers depend on: machine, interpreter and library versions, git revision."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "hostname": socket.gethostname(),
    }
    try:
        import zmq

        info["pyzmq"] = zmq.__version__
        info["libzmq"] = zmq.zmq_version()
    except ImportError:
        pass
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        if rev.returncode == 0:
            info["git_rev"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def write_results(name: str, payload: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Write ``payload`` plus environment to ``<dir>/<name>-<UTC stamp>.json`` and ``<name>-latest.json``."""
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    doc = {"benchmark": name, "created_utc": stamp, "environment": environment(), **payload}
    text = json.dumps(doc, indent=2, sort_keys=False, default=str)
    path = directory / f"{name}-{stamp}.json"
    path.write_text(text + "\n")
    (directory / f"{name}-latest.json").write_text(text + "\n")
    return path


# ----------------------------------------------------------------------------- waiting + ports
def wait_for(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes (then TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s: {message}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports, all held open together while picking so they differ."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def consecutive_free_ports(count: int) -> int:
    """First of ``count`` consecutive free loopback ports (for a scheduler that binds port, port+1, ...):
    the tests' own choice, below the kernel's ephemeral range."""
    from tests.support.server_process import free_port_block

    return free_port_block(count)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- processes
@dataclass
class ProcessGroup:
    """Subprocesses started by a benchmark, stopped together (SIGTERM, then SIGKILL after a grace).

    Use as a context manager so a crash or Ctrl-C in the middle of a run still stops everything.
    Output goes to per-process log files in ``log_dir`` (so pipes never fill up and block a child);
    ``tail(name)`` shows the end of one when something fails.
    """

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def __enter__(self) -> ProcessGroup:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` as ``name`` (unique within the group) with the group's environment."""
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"process {name!r} already running")
        full_env = {**os.environ, **self.env, **(env or {})}
        log = self.log_dir / f"{name}.log"
        self.logs[name] = log
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=str(cwd or REPO_ROOT),
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def check_alive(self, *names: str) -> None:
        """Raise with the log tail if one of ``names`` (default: all) has exited."""
        for name in names or tuple(self.procs):
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_s(self, prefix: str = "") -> float:
        """CPU seconds used so far by the group's processes whose name starts with ``prefix``
        (each with its descendants, e.g. a node's inference child)."""
        return sum(process_tree_cpu_s(p.pid) for n, p in self.procs.items() if n.startswith(prefix))

    def stop(self, name: str, grace: float = 5.0) -> int | None:
        """Stop one process (and its session): SIGTERM, wait ``grace`` seconds, then SIGKILL."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop every process: signal all first, then wait, so shutdowns overlap."""
        procs = list(self.procs.items())
        for _, proc in procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the child's process group (it was started in its own session), falling back to the child."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (Linux ``/proc``; 0.0 elsewhere).

    Used to attribute CPU per task to each part of a system (scheduler, node + inference child,
    broker, Redis): on a small box the part that burns the most CPU per task is the bottleneck.
    """
    if not Path("/proc").is_dir():
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields_ = _stat_fields(int(entry.name))
        if fields_ is None:
            continue
        child, parent = int(entry.name), int(fields_[1])  # fields_[1] is ppid (field 4 of stat)
        children.setdefault(parent, []).append(child)
        cpu[child] = (int(fields_[11]) + int(fields_[12])) / tick  # utime, stime (fields 14, 15)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def self_cpu_s() -> float:
    """CPU seconds of this process, all threads (user + system)."""
    t = os.times()
    return t.user + t.system


def python_argv(*args: str) -> list[str]:
    """``[sys.executable, *args]``: children run under the same interpreter as the benchmark."""
    return [sys.executable, *args]
