"""The scheduler's durable journal: tasks, their state changes and their blobs, in SQLite (WAL).

Why SQLite: one file, crash-safe with WAL, no server to run; the scheduler is its only writer.
Every state change goes through :mod:`.states`, so the journal never holds an illegal history.

Group commit: each mutating method commits on its own, unless it runs inside ``with
store.batch():``, in which case everything commits once when the block ends. The scheduler handles
a burst of messages in one batch and sends its replies (ACCEPTED, TASK, ...) only after the commit,
so a reply never announces something the journal could still lose. ``with store.savepoint():``
inside a batch undoes one message's changes if handling it fails, without losing the others.

Durability: ``synchronous`` is the SQLite pragma (``NORMAL`` by default, see
``DistributedConfig.journal_synchronous``). In WAL mode ``NORMAL`` survives a crash or SIGKILL of
the process; only an OS crash or power cut can lose the last commits. ``FULL`` fsyncs every commit.

Not thread-safe: one thread (the scheduler loop) uses a store at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...tasks import TaskInfo
from . import states

MIGRATIONS_ENV = "LAMA_CLEANER_MIGRATIONS_DIR"
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_\-]+\.sql$")

MAX_FREE_RECOVERIES = 2
"""How many scheduler restarts may interrupt a task without charging its retry budget. The
interruption is the scheduler's fault, not the task's, so the attempt is refunded; but a task that
keeps coming back from crashes (it may be what crashes the host) is charged after this many."""


class StoreError(RuntimeError):
    """The journal cannot be opened or migrated (the message says which file and why)."""


def default_migrations_dir() -> Path:
    env = os.environ.get(MIGRATIONS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "migrations"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TaskRecord:
    """One row of ``tasks`` (JSON columns decoded)."""

    seq: int
    id: str
    kind: str
    name: str
    queue: str
    status: str
    attempts: int
    max_attempts: int
    dispatches: int
    recoveries: int
    not_before: float
    node_id: str | None
    progress: float | None
    step: int | None
    total_steps: int | None
    submitter: str | None
    idempotency_key: str | None
    form: dict[str, str]
    error: str | None
    error_status: int | None
    traceback: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result_mimetype: str | None
    result_headers: dict[str, str] | None
    result_sha256: str | None
    duplicates: int

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.status)

    def to_info(self, position: int | None = None) -> TaskInfo:
        return TaskInfo(
            id=self.id,
            kind=self.kind,  # type: ignore[arg-type]
            name=self.name,
            status=self.status,
            queue=self.queue,
            node=self.node_id,
            progress=self.progress,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            position=position,
            error=self.error,
        )


@dataclass
class RecoveryReport:
    """What :meth:`TaskStore.recover` found: queued tasks kept, interrupted ones re-queued."""

    queued: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    charged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


_COLUMNS = (
    "seq, id, kind, name, queue, status, attempts, max_attempts, dispatches, recoveries, not_before, node_id, "
    "progress, step, total_steps, submitter, idempotency_key, form, error, error_status, traceback, created_at, "
    "started_at, finished_at, result_mimetype, result_headers, result_sha256, duplicates"
)


def _record(row: sqlite3.Row) -> TaskRecord:
    data = dict(row)
    data["form"] = json.loads(data["form"] or "{}")
    data["result_headers"] = json.loads(data["result_headers"]) if data["result_headers"] else None
    return TaskRecord(**data)


class TaskStore:
    """SQLite journal of tasks and blobs. See the module docstring for batching and durability."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        migrations_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            allowed = ", ".join(SYNCHRONOUS_MODES)
            raise StoreError(f"journal synchronous mode must be one of {allowed}, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._depth = 0
        self._sp_counter = 0
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open task journal {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={mode}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrations_dir = Path(migrations_dir) if migrations_dir else default_migrations_dir()
        self.applied_migrations = self._migrate()

    # ------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> list[str]:
        """Apply migrations not yet recorded in ``schema_version``; returns the files applied now."""
        if not self.migrations_dir.is_dir():
            raise StoreError(f"migrations folder {self.migrations_dir} does not exist (set {MIGRATIONS_ENV})")
        files = sorted(p for p in self.migrations_dir.iterdir() if _MIGRATION_NAME.match(p.name))
        if not files:
            raise StoreError(f"no migrations (NNNN_name.sql) found in {self.migrations_dir}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at REAL NOT NULL)"
        )
        applied: list[str] = []
        for path in files:
            version = int(_MIGRATION_NAME.match(path.name).group(1))  # type: ignore[union-attr]
            sql = path.read_text(encoding="utf-8")
            self._db.execute("BEGIN IMMEDIATE")  # serialises two processes opening the same journal
            try:
                done = self._db.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,)).fetchone()
                if done:
                    self._db.execute("COMMIT")
                    continue
                for statement in _split_sql(sql):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, path.name, time.time()),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"migration {path.name} failed: {exc}") from exc
            applied.append(path.name)
        return applied

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group every change made inside into one transaction (committed at the end, rolled back
        if the block raises). Nested batches join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the changes of this block alone if it raises (the exception propagates)."""
        with self.batch():
            self._sp_counter += 1
            name = f"sp{self._sp_counter}"
            self._db.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
                raise
            self._db.execute(f"RELEASE {name}")

    @property
    def in_batch(self) -> bool:
        return self._depth > 0

    def _exec(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    # ------------------------------------------------------------ blobs
    def put_blob(self, data: bytes, now: float | None = None) -> str:
        """Store ``data`` once under its sha256 and return the hash."""
        digest = sha256_of(data)
        with self.batch():
            self._exec(
                "INSERT OR IGNORE INTO blobs (sha256, size, data, created_at) VALUES (?, ?, ?, ?)",
                (digest, len(data), sqlite3.Binary(data), now if now is not None else time.time()),
            )
        return digest

    def get_blob(self, digest: str) -> bytes | None:
        row = self._exec("SELECT data FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        return bytes(row[0]) if row else None

    def blob_count(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM blobs").fetchone()[0])

    def inputs(self, task_id: str) -> dict[str, bytes]:
        """The task's input files, name -> bytes, in submission order."""
        rows = self._exec(
            "SELECT tb.name, b.data FROM task_blobs tb JOIN blobs b ON b.sha256 = tb.sha256 "
            "WHERE tb.task_id = ? AND tb.role = 'input' ORDER BY tb.position",
            (task_id,),
        ).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}

    # ------------------------------------------------------------ creating and reading
    def create_task(
        self,
        *,
        kind: str,
        name: str,
        queue: str,
        max_attempts: int,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, bytes] | None = None,
        submitter: str | None = None,
        idempotency_key: str | None = None,
        task_id: str | None = None,
        now: float | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Journal a new queued task with its input blobs; returns (record, created).

        With an ``idempotency_key`` already used, nothing is written and the existing task is
        returned with ``created=False``.
        """
        if idempotency_key:
            existing = self.find_by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing, False
        now = time.time() if now is None else now
        task_id = task_id or uuid.uuid4().hex
        with self.batch():
            self._exec(
                "INSERT INTO tasks (id, kind, name, queue, status, max_attempts, submitter, idempotency_key, form, "
                "created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                (
                    task_id,
                    kind,
                    name,
                    queue,
                    max(1, int(max_attempts)),
                    submitter,
                    idempotency_key or None,
                    json.dumps(dict(form or {})),
                    now,
                ),
            )
            for position, (fname, data) in enumerate((files or {}).items()):
                digest = self.put_blob(data, now)
                self._exec(
                    "INSERT INTO task_blobs (task_id, role, name, position, sha256) VALUES (?, 'input', ?, ?, ?)",
                    (task_id, fname, position, digest),
                )
        record = self.get(task_id)
        assert record is not None
        return record, True

    def get(self, task_id: str) -> TaskRecord | None:
        row = self._exec(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _record(row) if row else None

    def require(self, task_id: str) -> TaskRecord:
        record = self.get(task_id)
        if record is None:
            raise KeyError(task_id)
        return record

    def is_expired(self, task_id: str) -> bool:
        """True for a task that existed but was pruned by retention."""
        return self._exec("SELECT 1 FROM tombstones WHERE id = ?", (task_id,)).fetchone() is not None

    def find_by_idempotency_key(self, key: str) -> TaskRecord | None:
        row = self._exec(f"SELECT {_COLUMNS} FROM tasks WHERE idempotency_key = ?", (key,)).fetchone()
        return _record(row) if row else None

    def output(self, task_id: str) -> tuple[str, dict[str, str], bytes] | None:
        """(mimetype, headers, body) of a completed task, None if it has none (or it was pruned)."""
        record = self.get(task_id)
        if record is None or record.status != states.COMPLETED or not record.result_sha256:
            return None
        body = self.get_blob(record.result_sha256)
        if body is None:
            return None
        return record.result_mimetype or "application/octet-stream", record.result_headers or {}, body

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[TaskRecord], int]:
        """A page of tasks, newest first, and the total matching ``status`` (None = all)."""
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        total = int(self._exec(f"SELECT COUNT(*) FROM tasks {where}", params).fetchone()[0])
        rows = self._exec(
            f"SELECT {_COLUMNS} FROM tasks {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*params, max(0, int(limit)), max(0, int(offset))),
        ).fetchall()
        return [_record(r) for r in rows], total

    def position(self, task_id: str) -> int | None:
        """0-based place of a queued task in its queue (FIFO by submission); None if not queued."""
        row = self._exec("SELECT seq, queue, status FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None or row["status"] != states.QUEUED:
            return None
        ahead = self._exec(
            "SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND queue = ? AND seq < ?",
            (row["queue"], row["seq"]),
        ).fetchone()[0]
        return int(ahead)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{queue: {status: n}}`` over every task in the journal."""
        result: dict[str, dict[str, int]] = {}
        for row in self._exec("SELECT queue, status, COUNT(*) FROM tasks GROUP BY queue, status"):
            result.setdefault(row[0], {})[row[1]] = int(row[2])
        return result

    def status_counts(self) -> dict[str, int]:
        totals = dict.fromkeys(states.STATES, 0)
        for row in self._exec("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
            totals[row[0]] = int(row[1])
        return totals

    def count_queued(self, queue: str | None = None) -> int:
        if queue is None:
            return int(self._exec("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").fetchone()[0])
        return int(
            self._exec("SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND queue = ?", (queue,)).fetchone()[0]
        )

    def runnable(self, now: float, limit: int = 100, queues: list[str] | None = None) -> list[TaskRecord]:
        """Queued tasks whose retry delay has passed, oldest first (FIFO by submission)."""
        ids = [ref[0] for ref in self.runnable_refs(now, limit, queues)]
        records = [self.get(task_id) for task_id in ids]
        return [r for r in records if r is not None]

    def runnable_refs(
        self, now: float, limit: int = 100, queues: list[str] | None = None
    ) -> list[tuple[str, str, str, str]]:
        """Like :meth:`runnable` but only ``(id, kind, name, queue)``: what the dispatcher needs to
        choose, read every loop round, so it must stay cheap."""
        sql = "SELECT id, kind, name, queue FROM tasks WHERE status = 'queued' AND not_before <= ?"
        params: list[Any] = [now]
        if queues is not None:
            if not queues:
                return []
            sql += f" AND queue IN ({', '.join('?' * len(queues))})"
            params.extend(queues)
        sql += " ORDER BY seq LIMIT ?"
        params.append(max(1, int(limit)))
        return [(r[0], r[1], r[2], r[3]) for r in self._exec(sql, params).fetchall()]

    def next_wakeup(self, now: float) -> float | None:
        """The earliest ``not_before`` still in the future among queued tasks (when a retry is due)."""
        row = self._exec("SELECT MIN(not_before) FROM tasks WHERE status = 'queued' AND not_before > ?", (now,))
        value = row.fetchone()[0]
        return float(value) if value is not None else None

    def unfinished(self) -> list[TaskRecord]:
        rows = self._exec(f"SELECT {_COLUMNS} FROM tasks WHERE status IN ('queued', 'processing') ORDER BY seq")
        return [_record(r) for r in rows.fetchall()]

    # ------------------------------------------------------------ state changes
    def _move(self, task_id: str, event: str, sets: str, params: tuple[Any, ...]) -> TaskRecord:
        current = self.require(task_id)
        new = states.transition(current.status, event)
        with self.batch():
            cur = self._exec(
                f"UPDATE tasks SET status = ?, {sets} WHERE id = ? AND status = ?",
                (new, *params, task_id, current.status),
            )
            if cur.rowcount != 1:  # pragma: no cover - single writer; would mean a concurrent writer
                raise states.IllegalTransition(current.status, event)
        return self.require(task_id)

    def mark_processing(self, task_id: str, node_id: str, now: float | None = None) -> TaskRecord:
        """Hand-over to ``node_id``: charges one attempt and numbers the dispatch."""
        now = time.time() if now is None else now
        return self._move(
            task_id,
            states.DISPATCH,
            "attempts = attempts + 1, dispatches = dispatches + 1, node_id = ?, started_at = ?, progress = 0, "
            "step = NULL, total_steps = NULL",
            (node_id, now),
        )

    def undo_dispatch(self, task_id: str) -> TaskRecord:
        """The TASK never left this process (the node vanished first): back to queued, attempt refunded."""
        return self._move(task_id, states.RETRY, "attempts = MAX(0, attempts - 1), node_id = NULL, progress = NULL", ())

    def set_progress(
        self, task_id: str, percent: float, step: int | None = None, total_steps: int | None = None
    ) -> None:
        with self.batch():
            self._exec(
                "UPDATE tasks SET progress = ?, step = ?, total_steps = ? WHERE id = ? AND status = 'processing'",
                (float(percent), step, total_steps, task_id),
            )

    def complete(
        self,
        task_id: str,
        *,
        mimetype: str,
        headers: Mapping[str, str],
        body: bytes,
        node_id: str | None = None,
        now: float | None = None,
    ) -> TaskRecord:
        """Record the (first) result; later results must be counted with :meth:`add_duplicate`."""
        now = time.time() if now is None else now
        with self.batch():
            digest = self.put_blob(body, now)
            record = self._move(
                task_id,
                states.COMPLETE,
                "finished_at = ?, progress = 100, result_mimetype = ?, result_headers = ?, result_sha256 = ?, "
                "node_id = COALESCE(?, node_id), error = NULL, error_status = NULL, traceback = NULL",
                (now, mimetype, json.dumps(dict(headers)), digest, node_id),
            )
            self._exec(
                "INSERT OR REPLACE INTO task_blobs (task_id, role, name, position, sha256) "
                "VALUES (?, 'output', 'body', 0, ?)",
                (task_id, digest),
            )
        return record

    def fail(
        self,
        task_id: str,
        *,
        error: str,
        traceback: str | None = None,
        status: int | None = None,
        now: float | None = None,
    ) -> TaskRecord:
        """Failed for good (budget exhausted or a client error); error and traceback are kept."""
        now = time.time() if now is None else now
        return self._move(
            task_id,
            states.FAIL,
            "finished_at = ?, error = ?, traceback = ?, error_status = ?",
            (now, error, traceback, status),
        )

    def retry(
        self, task_id: str, *, not_before: float, error: str | None = None, traceback: str | None = None
    ) -> TaskRecord:
        """Back to queued after a failed/lost attempt (already charged at dispatch), due at ``not_before``."""
        return self._move(
            task_id,
            states.RETRY,
            "not_before = ?, node_id = NULL, progress = NULL, step = NULL, total_steps = NULL, "
            "error = COALESCE(?, error), traceback = COALESCE(?, traceback)",
            (not_before, error, traceback),
        )

    def cancel(self, task_id: str, now: float | None = None) -> TaskRecord:
        """Cancelled (queued: never dispatched afterwards; processing: any later result is discarded)."""
        now = time.time() if now is None else now
        return self._move(task_id, states.CANCEL, "finished_at = ?, error = 'Task was cancelled'", (now,))

    def add_duplicate(self, task_id: str) -> None:
        with self.batch():
            self._exec("UPDATE tasks SET duplicates = duplicates + 1 WHERE id = ?", (task_id,))

    # ------------------------------------------------------------ recovery and retention
    def recover(self, now: float | None = None) -> RecoveryReport:
        """After a restart: queued tasks stay queued; tasks that were processing go back to queued.

        The interrupted attempt is refunded (the scheduler died, not the task) for the first
        :data:`MAX_FREE_RECOVERIES` interruptions of a task; after that it stays charged, and a task
        whose budget is then used up is failed instead of looping through crashes forever.
        """
        now = time.time() if now is None else now
        report = RecoveryReport()
        with self.batch():
            for record in self.unfinished():
                if record.status == states.QUEUED:
                    report.queued.append(record.id)
                    continue
                free = record.recoveries < MAX_FREE_RECOVERIES
                if not free and record.attempts >= record.max_attempts:
                    self._move(
                        record.id,
                        states.FAIL,
                        "finished_at = ?, error = ?, recoveries = recoveries + 1, node_id = NULL",
                        (now, f"interrupted by {record.recoveries + 1} scheduler restarts; no attempts left"),
                    )
                    report.failed.append(record.id)
                    continue
                refund = 1 if free else 0
                self._move(
                    record.id,
                    states.RECOVER,
                    "attempts = MAX(0, attempts - ?), recoveries = recoveries + 1, not_before = 0, node_id = NULL, "
                    "progress = NULL, step = NULL, total_steps = NULL",
                    (refund,),
                )
                report.requeued.append(record.id)
                if not free:
                    report.charged.append(record.id)
        return report

    def prune(self, older_than: float, now: float | None = None, limit: int = 500) -> tuple[int, int]:
        """Delete up to ``limit`` finished tasks with ``finished_at < older_than``, then blobs no task
        references (also at most ``limit``). Bounded so one call never stalls the scheduler loop;
        call again while it returns ``limit`` tasks or blobs.

        Returns (tasks removed, blobs removed). Pruned ids become tombstones (answered as
        "expired"), themselves forgotten once they are as old again as the retention window.
        """
        now = time.time() if now is None else now
        limit = max(1, int(limit))
        with self.batch():
            ids = [
                r[0]
                for r in self._exec(
                    "SELECT id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ? "
                    "AND status IN ('completed', 'failed', 'cancelled') ORDER BY finished_at LIMIT ?",
                    (older_than, limit),
                ).fetchall()
            ]
            for task_id in ids:
                self._exec("INSERT OR IGNORE INTO tombstones (id, expired_at) VALUES (?, ?)", (task_id, now))
                self._exec("DELETE FROM tasks WHERE id = ?", (task_id,))  # task_blobs rows cascade
            blobs = self._exec(
                "DELETE FROM blobs WHERE sha256 IN (SELECT b.sha256 FROM blobs b "
                "WHERE NOT EXISTS (SELECT 1 FROM task_blobs tb WHERE tb.sha256 = b.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.result_sha256 = b.sha256) LIMIT ?)",
                (limit,),
            ).rowcount
            self._exec("DELETE FROM tombstones WHERE expired_at < ?", (older_than,))
        return len(ids), int(blobs)


def _split_sql(script: str) -> list[str]:
    """Statements of a migration file, using sqlite3.complete_statement to find their ends."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if stmt and not all(part.strip().startswith("--") or not part.strip() for part in stmt.splitlines()):
                statements.append(stmt)
            buf = ""
    if buf.strip() and not all(p.strip().startswith("--") or not p.strip() for p in buf.splitlines()):
        raise StoreError("migration ends with an incomplete SQL statement")
    return statements
