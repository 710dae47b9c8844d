"""One soak, start to verdict: the cluster up, clients and faults running together, everything
healed, each key asked once more, the journal read, the processes stopped, the figures computed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .clients import SoakClients
from .cluster import ChaosCluster, ClusterSettings
from .faults import Fault, FaultInjector, plan_faults
from .verdict import read_journal, verdict
from .workload import TaskSpec


@dataclass(frozen=True)
class SoakSettings:
    tasks: int = 2000
    seed: int = 1
    clients: int = 4
    """Client threads; each keeps up to ``window`` of its tasks in flight."""
    window: int = 4
    classic_every: int = 10
    """Every n-th task goes to the classic ``/inpaint`` (no key; the answer is the image); 0: none."""
    image_size: tuple[int, int] = (40, 32)
    """(width, height) of every task's image: larger ones keep nodes busy longer, so kills hit running tasks."""
    server_kills: int = 3
    node_kills: int = 12
    link_cuts: int = 12
    client_cuts: int = 6
    """Cuts of the clients' connections to the server (replies lost after the server acted)."""
    node_freezes: int = 6
    """SIGSTOP of a node process for 0.3-3 s (mostly past the liveness window), then SIGCONT."""
    inference_kills: int = 8
    """SIGKILL of a node's inference process only (the OOM killer's way)."""
    server_terms: int = 1
    """SIGTERM of the web server (graceful shutdown: refuses new work, finishes what is in flight), then a restart."""
    scheduler_kills: int = 0
    """SIGKILL + restart of the standalone scheduler (needs ``cluster.external_scheduler``)."""
    deadline_s: float = 1800.0
    """The run stops by itself after this long, whatever is left (unfinished tasks count as lost)."""
    recheck_s: float = 300.0
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


def run_soak(
    settings: SoakSettings,
    workdir: Path,
    *,
    plan: list[Fault] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the soak in ``workdir`` (journal, config, node logs) and return the report (see ``verdict``).

    ``plan``: these faults instead of the seeded plan that ``settings`` describes.
    """
    cluster = ChaosCluster(workdir, settings.cluster)
    plan = (
        plan
        if plan is not None
        else plan_faults(
            settings.seed,
            nodes=settings.cluster.nodes,
            server_kills=settings.server_kills,
            node_kills=settings.node_kills,
            link_cuts=settings.link_cuts,
            client_cuts=settings.client_cuts,
            node_freezes=settings.node_freezes,
            inference_kills=settings.inference_kills,
            scheduler_kills=settings.scheduler_kills,
            server_terms=settings.server_terms,
        )
    )
    notes: list[str] = []
    try:
        say(f"starting the server and {settings.cluster.nodes} nodes in {workdir}")
        cluster.start()
        specs = [TaskSpec(settings.seed, i, *settings.image_size) for i in range(settings.tasks)]
        clients = SoakClients(
            cluster.client_url,
            specs,
            threads=settings.clients,
            window=settings.window,
            classic_every=settings.classic_every,
        )
        fault_stop = threading.Event()
        injector = FaultInjector(cluster, plan, clients.progress, fault_stop)
        say(f"{settings.tasks} tasks, {len(plan)} faults planned")
        started = time.time()
        clients.start()
        injector.start()
        _report_progress(clients, settings.deadline_s, say)
        if not clients.join(0):
            notes.append(f"the deadline of {settings.deadline_s:.0f}s passed with tasks still in flight")
            clients.stop.set()
            clients.join(60)
        if not injector.join(60):
            notes.append("the fault injector did not finish its last faults within 60s of the clients")
        fault_stop.set()
        injector.join(120)
        wall_s = time.time() - started
        notes += [f"fault injector error: {e}" for e in injector.errors]
        notes += [f"client thread crashed: {c}" for c in clients.crashes]
        if len(injector.records) < len(plan):
            notes.append(f"only {len(injector.records)} of {len(plan)} planned faults fired")
        if not cluster.server_alive():
            cluster.start_server()
        posts_before = {ledger.spec.key: ledger.posts for ledger in clients.ledgers}
        say("faults over; asking every key once more")
        clients.url = cluster.url  # straight to the server: the check is not a fault
        clients.recheck_all(settings.recheck_s)
        if not clients.rechecked_all:
            notes.append(f"the resubmission of every key did not finish within {settings.recheck_s:.0f}s")
        journal = read_journal(cluster.journal_file)
    except BaseException:
        say(f"server output (tail):\n{cluster.server_output()[-4000:]}")
        raise
    finally:
        cluster.close()
    report = verdict(
        clients.ledgers, journal, injector.records, wall_s=wall_s, posts_before_recheck=posts_before, notes=notes
    )
    report["settings"] = asdict(settings)
    report["server_starts"] = cluster.server_starts
    report["scheduler_starts"] = cluster.scheduler.starts if cluster.scheduler is not None else None
    report["node_starts"] = sum(node.starts for node in cluster.nodes)
    report["workdir"] = str(workdir)
    return report


def _report_progress(clients: SoakClients, deadline_s: float, say: Callable[[str], None]) -> None:
    """Wait for the clients (up to ``deadline_s``), saying how far they are every 10 s."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if clients.join(min(10.0, max(0.0, deadline - time.monotonic()))):
            return
        progress = clients.progress
        say(f"  {progress.finished}/{progress.total} tasks finished")
