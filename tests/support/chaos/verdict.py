"""The soak's figures, from what the clients saw and what the journal holds.

- **lost**: a key whose task was accepted but never seen final (still queued or processing at the
  deadline), vanished (404), or completed without an image; or a task id the journal lacks.
- **delivered twice**: a key that named two task ids (at any time, including the resubmission
  after the faults), a journal with two rows for one key, or a final state or result image that
  changed after the client first saw it.
- **wrong**: a completed task whose image is not the oracle's.

Re-executions under the hood (a task dispatched twice because its node was lost, a second result
discarded) are at-least-once execution and are reported, not counted against the run: what must
be exactly once is what a client can see.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .clients import TERMINAL, Ledger
from .faults import FaultRecord


@dataclass(frozen=True)
class JournalRow:
    id: str
    key: str | None
    status: str
    attempts: int
    dispatches: int
    recoveries: int
    duplicates: int
    finished_at: float | None


def read_journal(path: Path) -> list[JournalRow]:
    """Every task row (read-only; the server may still be running: WAL lets a reader in)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT id, idempotency_key, status, attempts, dispatches, recoveries, duplicates, finished_at FROM tasks"
        ).fetchall()
    finally:
        db.close()
    return [JournalRow(*row) for row in rows]


def verdict(
    ledgers: Sequence[Ledger],
    journal: Sequence[JournalRow],
    faults: Sequence[FaultRecord],
    *,
    wall_s: float,
    posts_before_recheck: dict[str, int],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The report: counts, reasons, examples of each violation, recovery times, and ``ok``."""
    by_id = {row.id: row for row in journal}
    rows_per_key = Counter(row.key for row in journal if row.key)
    lost: list[str] = []
    twice: list[str] = []
    wrong: list[str] = []
    failed_reasons: Counter[str] = Counter()
    refused_reasons: Counter[str] = Counter()
    for ledger in ledgers:
        key = ledger.spec.key
        for problem in ledger.problems:
            kind, _, text = problem.partition(": ")
            target = {"lost": lost, "wrong": wrong}.get(kind, twice)
            target.append(f"{key}: {text}")
        if len(ledger.task_ids) > 1:
            twice.append(f"{key}: one key, tasks {ledger.task_ids}")
        if rows_per_key[key] > 1:
            twice.append(f"{key}: {rows_per_key[key]} journal rows")
        if ledger.status == "refused":
            refused_reasons[ledger.error or "?"] += 1
        elif ledger.task_id is not None:
            if ledger.status not in TERMINAL and ledger.status != "lost":
                lost.append(f"{key}: task {ledger.task_id} not finished at the end (last seen {ledger.status})")
            if ledger.task_id not in by_id:
                lost.append(f"{key}: task {ledger.task_id} is not in the journal")
        if ledger.status == "failed":
            failed_reasons[ledger.error or "?"] += 1
    ours = {ledger.spec.key for ledger in ledgers}
    rows = [row for row in journal if row.key in ours]
    completed_times = sorted(row.finished_at for row in rows if row.status == "completed" and row.finished_at)
    statuses = Counter(ledger.status or "not accepted" for ledger in ledgers)
    classic = [ledger for ledger in ledgers if ledger.classic]
    report: dict[str, Any] = {
        "tasks": len(ledgers),
        "accepted": sum(1 for ledger in ledgers if ledger.task_id is not None or ledger.status == "completed"),
        "classic_requests": len(classic),
        "classic_completed": sum(1 for ledger in classic if ledger.status == "completed"),
        "classic_retried": sum(1 for ledger in classic if ledger.posts > 1),
        "completed": statuses["completed"],
        "failed": statuses["failed"],
        "failed_reasons": dict(failed_reasons),
        "cancelled": statuses["cancelled"],
        "refused": statuses["refused"],
        "refused_reasons": dict(refused_reasons),
        "lost": len(lost),
        "delivered_twice": len(twice),
        "wrong_results": len(wrong),
        "examples": {"lost": lost[:10], "delivered_twice": twice[:10], "wrong_results": wrong[:10]},
        "keys_posted_more_than_once": sum(
            1 for ledger in ledgers if not ledger.classic and posts_before_recheck.get(ledger.spec.key, 0) > 1
        ),
        "client_retries": dict(sum((ledger.retried for ledger in ledgers), Counter())),
        "executed_more_than_once": sum(1 for row in rows if row.dispatches > 1),
        "dispatches": sum(row.dispatches for row in rows),
        "duplicate_results_discarded": sum(row.duplicates for row in rows),
        "interrupted_by_server_restart": sum(1 for row in rows if row.recoveries > 0),
        "wall_s": round(wall_s, 1),
        "throughput_per_s": round(statuses["completed"] / wall_s, 2) if wall_s > 0 else None,
        "faults": [_fault_entry(record, completed_times, by_id) for record in faults],
        "notes": list(notes),
    }
    report["recovery"] = _recovery_summary(report["faults"])
    report["ok"] = not lost and not twice and not wrong and not notes
    return report


def _fault_entry(record: FaultRecord, completed_times: list[float], by_id: dict[str, JournalRow]) -> dict[str, Any]:
    entry: dict[str, Any] = {**asdict(record.fault), "fired_at": record.fired_at, "restart_s": record.restart_s}
    entry["held_s"] = round(record.undone_at - record.fired_at, 2) if record.undone_at else None
    after = next((t for t in completed_times if t > record.fired_at), None)
    entry["recovery_s"] = round(after - record.fired_at, 3) if after is not None else None
    task = by_id.get(record.interrupted_task or "")
    entry["interrupted_task"] = record.interrupted_task
    redone = task.finished_at if task and task.finished_at and task.finished_at > record.fired_at else None
    entry["interrupted_task_done_s"] = round(redone - record.fired_at, 3) if redone else None
    entry["note"] = record.note
    return entry


def _recovery_summary(entries: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per fault kind: how many, and the seconds from the fault to the next completed task."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({e["kind"] for e in entries}):
        mine = [e for e in entries if e["kind"] == kind]
        times = [e["recovery_s"] for e in mine if e["recovery_s"] is not None]
        redone = [e["interrupted_task_done_s"] for e in mine if e["interrupted_task_done_s"] is not None]
        out[kind] = {
            "count": len(mine),
            "recovery_p50_s": round(statistics.median(times), 3) if times else None,
            "recovery_max_s": round(max(times), 3) if times else None,
            "interrupted_tasks": len(redone),
            "interrupted_done_p50_s": round(statistics.median(redone), 3) if redone else None,
            "interrupted_done_max_s": round(max(redone), 3) if redone else None,
        }
        restarts = [e["restart_s"] for e in mine if e["restart_s"] is not None]
        if restarts:
            out[kind]["restart_p50_s"] = round(statistics.median(restarts), 3)
    return out


def format_report(report: dict[str, Any]) -> str:
    """The figures as a table a person can read."""
    lines = ["chaos soak", "-" * 58]
    for label, key in (
        ("tasks", "tasks"), ("  of which classic /inpaint", "classic_requests"),
        ("  classic answered with the image", "classic_completed"),
        ("  classic sent again (no key: new task)", "classic_retried"),
        ("accepted", "accepted"), ("completed", "completed"), ("failed", "failed"),
        ("cancelled", "cancelled"), ("refused", "refused"), ("LOST (must be 0)", "lost"),
        ("DELIVERED TWICE (must be 0)", "delivered_twice"), ("WRONG RESULTS (must be 0)", "wrong_results"),
        ("keys posted more than once", "keys_posted_more_than_once"),
        ("executed more than once (hidden)", "executed_more_than_once"),
        ("duplicate results discarded", "duplicate_results_discarded"),
        ("interrupted by a server restart", "interrupted_by_server_restart"),
        ("wall time (s)", "wall_s"), ("completed per second", "throughput_per_s"),
    ):  # fmt: skip
        lines.append(f"{label:<40}{report[key]!s:>18}")
    for reason, count in report["failed_reasons"].items():
        lines.append(f"  failed: {count} x {reason[:90]}")
    for reason, count in report["refused_reasons"].items():
        lines.append(f"  refused: {count} x {reason[:90]}")
    retries = ", ".join(f"{k} {v}" for k, v in sorted(report["client_retries"].items())) or "none"
    lines.append(f"client retries: {retries}")
    lines.append("")
    header = f"{'fault':<16}{'count':>6}{'next done p50':>15}{'max':>8}{'hit tasks':>11}{'redone p50':>12}{'max':>8}"
    lines += [header, "-" * len(header)]
    for kind, row in report["recovery"].items():
        lines.append(
            f"{kind:<16}{row['count']:>6}{_s(row['recovery_p50_s']):>15}{_s(row['recovery_max_s']):>8}"
            f"{row['interrupted_tasks']:>11}{_s(row['interrupted_done_p50_s']):>12}{_s(row['interrupted_done_max_s']):>8}"
        )
        if "restart_p50_s" in row:
            lines.append(f"{'':<16}ready again after a restart: p50 {row['restart_p50_s']:.2f} s")
    for kind in ("lost", "delivered_twice", "wrong_results"):
        for example in report["examples"][kind]:
            lines.append(f"{kind}: {example}")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    lines.append("verdict: " + ("OK" if report["ok"] else "FAILED"))
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"
