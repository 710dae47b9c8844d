"""The fault plan: which faults, on which node, for how long, and when (seeded, so reproducible).

A fault fires when a given fraction of the tasks has finished, not at a clock time: the same seed
gives the same sequence of faults against the same stretch of work on a fast or a loaded machine,
and a soak cannot end before its faults happened. Faults may overlap (a node killed while another
one's link is cut, the server killed while a node is down): each node fault is undone after its
``hold_s`` by the injector's loop, which keeps firing the next faults meanwhile.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import requests

from .clients import Progress
from .cluster import ChaosCluster

SERVER_KILL = "server_kill"
SCHEDULER_KILL = "scheduler_kill"
SERVER_TERM = "server_term"
NODE_KILL = "node_kill"
LINK_CUT = "link_cut"
CLIENT_CUT = "client_cut"
NODE_FREEZE = "node_freeze"
INFERENCE_KILL = "inference_kill"


@dataclass(frozen=True)
class Fault:
    at: float
    """Fraction of the tasks finished (0..1) that triggers it."""
    kind: str
    node: int | None = None
    hold_s: float = 0.0
    """How long the node stays dead or its link cut (the server restarts at once)."""


@dataclass
class FaultRecord:
    """What happened when a fault fired (wall-clock times, comparable with the journal's)."""

    fault: Fault
    fired_at: float
    undone_at: float | None = None
    restart_s: float | None = None
    """Server: seconds from the restart to the first answer. Node: None."""
    interrupted_task: str | None = None
    """The task the node was running when it was hit, if the scheduler reported one."""
    note: str = ""


def plan_faults(
    seed: int,
    *,
    nodes: int,
    server_kills: int,
    node_kills: int,
    link_cuts: int,
    client_cuts: int = 0,
    node_freezes: int = 0,
    inference_kills: int = 0,
    scheduler_kills: int = 0,
    server_terms: int = 0,
    span: tuple[float, float] = (0.05, 0.9),
) -> list[Fault]:
    """Seeded faults spread over ``span`` of the run: server kills evenly (with jitter), node
    kills and cuts at random moments; cuts are either shorter than the liveness window (the
    scheduler keeps the node) or longer (it declares the node lost and re-queues its task)."""
    rng = random.Random(seed)
    low, high = span
    width = high - low
    faults: list[Fault] = []
    for k in range(server_kills):
        slot = width / server_kills
        faults.append(Fault(round(low + slot * (k + rng.uniform(0.25, 0.75)), 4), SERVER_KILL))
    for _ in range(node_kills):
        at, node, hold = rng.uniform(low, high), rng.randrange(nodes), rng.uniform(0.2, 3.0)
        faults.append(Fault(round(at, 4), NODE_KILL, node, round(hold, 2)))
    for _ in range(link_cuts):
        hold = rng.uniform(0.2, 0.6) if rng.random() < 0.5 else rng.uniform(1.5, 4.0)
        faults.append(Fault(round(rng.uniform(low, high), 4), LINK_CUT, rng.randrange(nodes), round(hold, 2)))
    for _ in range(client_cuts):
        faults.append(Fault(round(rng.uniform(low, high), 4), CLIENT_CUT, None, round(rng.uniform(0.1, 1.0), 2)))
    for _ in range(node_freezes):
        at, node, hold = rng.uniform(low, high), rng.randrange(nodes), rng.uniform(0.3, 3.0)
        faults.append(Fault(round(at, 4), NODE_FREEZE, node, round(hold, 2)))
    for _ in range(inference_kills):
        faults.append(Fault(round(rng.uniform(low, high), 4), INFERENCE_KILL, rng.randrange(nodes)))
    for k in range(scheduler_kills):
        slot = width / scheduler_kills
        faults.append(Fault(round(low + slot * (k + rng.uniform(0.25, 0.75)), 4), SCHEDULER_KILL))
    for _ in range(server_terms):
        faults.append(Fault(round(rng.uniform(low, high), 4), SERVER_TERM))
    return sorted(faults, key=lambda f: f.at)


@dataclass
class _Pending:
    record: FaultRecord
    due: float


class FaultInjector:
    """Fires a plan's faults as the clients progress; undoes node faults after their hold time."""

    def __init__(self, cluster: ChaosCluster, plan: list[Fault], progress: Progress, stop: threading.Event) -> None:
        self.cluster = cluster
        self.plan = list(plan)
        self.progress = progress
        self.stop = stop
        self.records: list[FaultRecord] = []
        self.errors: list[str] = []
        self._pending: list[_Pending] = []
        self._thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)
        self.done = threading.Event()

    def start(self) -> FaultInjector:
        self._thread.start()
        return self

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            queue = list(self.plan)
            while (queue or self._pending) and not self.stop.is_set():
                self._undo_due()
                if queue and self.progress.fraction() >= queue[0].at:
                    self._fire(queue.pop(0))
                    continue
                wait = min([p.due - time.monotonic() for p in self._pending] + [0.2])
                self.progress.wait_fraction(queue[0].at if queue else 2.0, self.stop, max(0.0, wait))
        except Exception as exc:  # noqa: BLE001 - reported with the figures; the soak then heals the cluster
            self.errors.append(repr(exc))
        finally:
            try:
                self.heal()
            except Exception as exc:  # noqa: BLE001 - e.g. the server failed to start again: a finding
                self.errors.append(f"healing the cluster failed: {exc!r}")
            self.done.set()

    def _fire(self, fault: Fault) -> None:
        record = FaultRecord(fault, fired_at=time.time())
        if fault.kind == SERVER_KILL:
            self.cluster.kill_server()
            record.fired_at = time.time()
            record.restart_s = self.cluster.start_server()
            record.undone_at = time.time()
        elif fault.kind == SERVER_TERM:
            self.cluster.term_server()
            record.note = f"exited in {time.time() - record.fired_at:.2f}s"
            record.restart_s = self.cluster.start_server()
            record.undone_at = time.time()
        elif fault.kind == SCHEDULER_KILL:
            self.cluster.kill_scheduler()
            record.fired_at = time.time()
            record.restart_s = self.cluster.start_scheduler()
            record.undone_at = time.time()
        elif fault.kind == CLIENT_CUT:
            self.cluster.front.cut()
            record.fired_at = time.time()
            self._pending.append(_Pending(record, time.monotonic() + fault.hold_s))
        else:
            assert fault.node is not None
            node = self.cluster.nodes[fault.node]
            record.interrupted_task = self._current_task(node.name)
            if fault.kind == NODE_KILL:
                if not node.alive:
                    record.note = "already down"
                node.sigkill()
            elif fault.kind == NODE_FREEZE:
                node.freeze()
            elif fault.kind == INFERENCE_KILL:
                if not node.kill_inference():
                    record.note = "no inference process"
            else:
                if node.is_cut:
                    record.note = "already cut"
                node.cut_link()
            record.fired_at = time.time()
            self._pending.append(_Pending(record, time.monotonic() + fault.hold_s))
        self.records.append(record)

    def _undo_due(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self._pending if p.due <= now]:
            self._pending.remove(pending)
            self._undo(pending.record)

    def _undo(self, record: FaultRecord) -> None:
        if record.fault.kind == CLIENT_CUT:
            if not any(p.record.fault.kind == CLIENT_CUT for p in self._pending):
                self.cluster.front.restore()
            record.undone_at = time.time()
            return
        node = self.cluster.nodes[record.fault.node or 0]
        if record.fault.kind == NODE_KILL:
            node.start()
        elif record.fault.kind == NODE_FREEZE:
            if not any(p.record.fault.kind == NODE_FREEZE and p.record.fault.node == node.index for p in self._pending):
                node.thaw()
        elif record.fault.kind == INFERENCE_KILL:
            pass  # the node replaces its inference process by itself
        elif not any(p.record.fault.kind == LINK_CUT and p.record.fault.node == node.index for p in self._pending):
            node.restore_link()  # an overlapping later cut of the same link keeps it cut until it ends
        record.undone_at = time.time()

    def _current_task(self, name: str) -> str | None:
        """The task the scheduler thinks ``name`` runs (best effort: the server may be restarting)."""
        try:
            nodes = requests.get(f"{self.cluster.url}/api/v1/nodes", timeout=2).json()["nodes"]
        except (requests.RequestException, ValueError, KeyError):
            return None
        for node in nodes:
            if node.get("name") == name and node.get("state") != "offline":
                return node.get("current_task")
        return None

    def heal(self) -> None:
        """Undo every fault still in force: links restored, dead nodes restarted, server up."""
        for pending in list(self._pending):
            self._pending.remove(pending)
            self._undo(pending.record)
        for node in self.cluster.nodes:
            node.thaw()
            if node.is_cut:
                node.restore_link()
            if not node.alive:
                node.start()
        self.cluster.front.restore()
        if self.cluster.scheduler is not None and not self.cluster.scheduler.alive:
            self.cluster.start_scheduler()
        if not self.cluster.server_alive():
            self.cluster.start_server()
