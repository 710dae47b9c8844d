"""The scheduler's durable journal: tasks, their state changes and their blobs, in SQLite (WAL).

Why SQLite: one file, crash-safe with WAL, no server to run; the scheduler is its only writer.
Every state change goes through :mod:`.states`, so the journal never holds an illegal history.

Group commit: each mutating method commits on its own, unless it runs inside ``with
store.batch():``, in which case everything commits once when the block ends. The scheduler handles
a burst of messages in one batch and sends its replies (ACCEPTED, TASK, ...) only after the commit,
so a reply never announces something the journal could still lose. ``with store.savepoint():``
inside a batch undoes one message's changes if handling it fails, without losing the others.
Both are lazy: ``BEGIN`` and ``SAVEPOINT`` are only issued before the first write inside them, so a
round or a message that writes nothing (READY, HEARTBEAT, GET, FETCH...) costs no statement at all.

Live index: the store keeps every unfinished task's record in memory (:class:`~.live_tasks.LiveTasks`,
loaded when the journal opens) and updates it with each write, rolling it back with the transaction.
Reads of live tasks, positions, queue counts and the runnable scan never touch SQLite; records are
values (a change makes a new one), so a record handed out never changes under its holder. The index
assumes this store is the journal's only writer, which the scheduler's data-directory lock ensures.

Durability: ``synchronous`` is the SQLite pragma (``NORMAL`` by default, see
``DistributedConfig.journal_synchronous``). In WAL mode ``NORMAL`` survives a crash or SIGKILL of
the process; only an OS crash or power cut can lose the last commits. ``FULL`` fsyncs every commit.

Blobs: inputs are content-addressed (sha256) and shared between tasks; a result is stored under a
random 256-bit name of the same shape (:func:`result_key`), since no other task shares it and
hashing a 1080p PNG reply cost 1.8 ms of every request's latency. Blobs up to ``inline_max`` bytes
(64 KiB) are stored in the ``blobs`` table; larger ones (images, results) are files in the
journal's ``blobs/`` folder (:mod:`.blob_files`), because writing a 1 MB BLOB through the WAL and
its checkpoint cost ten times a file write. A file is in place before the commit that references
it (and fsynced first under ``FULL``), and removed only after the commit that drops its row: every
batch ends by reconciling the files it touched with the committed rows, and opening the journal
removes files no row claims (a crash between rename and commit). So, like the live index, this
assumes one owner: never open a journal another process is writing (the scheduler holds a lock).

Not thread-safe: one thread (the scheduler loop) uses a store at a time.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
import json
import os
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ....tasks import DEFAULT_PRIORITY, check_priority
from . import states
from .blob_files import BlobFiles
from .live_tasks import LiveTasks
from .records import RecoveryReport, TaskRecord

MIGRATIONS_ENV = "LAMA_CLEANER_MIGRATIONS_DIR"
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_\-]+\.sql$")
BLOB_DIR = "blobs"
INLINE_BLOB_MAX = 64 * 1024
"""Blobs up to this many bytes stay in the journal; bigger ones are files (see :mod:`.blob_files`)."""

MAX_FREE_RECOVERIES = 2
"""How many scheduler restarts may interrupt a task without charging its retry budget. The
interruption is the scheduler's fault, not the task's, so the attempt is refunded; but a task that
keeps coming back from crashes (it may be what crashes the host) is charged after this many."""

WAL_AUTOCHECKPOINT_PAGES = 4000
"""Checkpoint the WAL into the journal file every 4000 pages (16 MiB at 4 KiB) instead of SQLite's
1000: the same hot index pages are rewritten by nearly every commit, so a checkpoint that runs a
quarter as often writes them back a quarter as often. Measured on the journal alone (create, dispatch,
complete; one commit per step): 181-183 -> 163-167 us of CPU per task. The cost: a WAL of up to
16 MiB on disk, and each (rarer) checkpoint pauses that commit longer."""

# States of a savepoint() block (see TaskStore.savepoint): nothing written yet, SAVEPOINT issued, or
# its first write opened the transaction (undone by ROLLBACK, no SAVEPOINT needed).
_SP_PENDING, _SP_ISSUED, _SP_AT_BEGIN = 0, 1, 2


class StoreError(RuntimeError):
    """The journal cannot be opened or migrated (the message says which file and why)."""


class BlobMissing(LookupError):
    """A blob the journal references is gone (its file was lost, e.g. to a power cut under NORMAL)."""


MIGRATIONS_PACKAGE = "lama_cleaner.migrations"
"""Where an installed wheel keeps the ``.sql`` files (``setup.py`` maps the top-level ``migrations/``
folder to this package)."""


def default_migrations_dir() -> Path:
    """The folder of the ``NNNN_name.sql`` files: ``$LAMA_CLEANER_MIGRATIONS_DIR`` if set, else the
    installed ``lama_cleaner.migrations`` package, else the repository's top-level ``migrations/``
    (a source checkout or an editable install, where that package is not importable)."""
    env = os.environ.get(MIGRATIONS_ENV)
    if env:
        return Path(env)
    try:
        packaged = importlib.resources.files(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError:
        packaged = None
    if isinstance(packaged, Path) and packaged.is_dir():  # a zip import has no folder to read from
        return packaged
    return Path(__file__).resolve().parents[4] / "migrations"  # journal/ distributed/ plugins/ lama_cleaner/ <root>


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def result_key() -> str:
    """A fresh name for a result blob: 64 hex digits like a sha256 (the ``blobs`` key, the file name
    and the start-up sweep expect that shape), drawn at random instead of hashed."""
    return secrets.token_hex(32)


_COLUMNS = (
    "seq, id, kind, name, queue, status, attempts, max_attempts, dispatches, recoveries, not_before, node_id, "
    "progress, step, total_steps, submitter, idempotency_key, form, error, error_status, traceback, created_at, "
    "started_at, finished_at, result_mimetype, result_headers, result_sha256, duplicates"
)
_PRIORITY_COLUMN = ", priority"
_NO_PRIORITY_COLUMN = f", {DEFAULT_PRIORITY} AS priority"
"""A journal migrated only up to 0003 (an explicit older ``migrations_dir``) has no ``priority``
column: its tasks read as the default priority."""
_OWNER_COLUMN = ", owner"
_NO_OWNER_COLUMN = ", NULL AS owner"
"""Likewise ``owner`` (migration 0005): without it every task reads as owned by nobody."""


def _record(row: sqlite3.Row) -> TaskRecord:
    data = dict(row)
    data["form"] = json.loads(data["form"] or "{}")
    data["result_headers"] = json.loads(data["result_headers"]) if data["result_headers"] else None
    return TaskRecord(**data)


def _evolve(rec: TaskRecord, changes: Mapping[str, Any]) -> TaskRecord:
    """A copy of ``rec`` with ``changes`` applied (records are values; the original is untouched)."""
    new = object.__new__(TaskRecord)
    data = rec.__dict__.copy()
    data.update(changes)
    new.__dict__ = data
    return new


_JSON_COLUMNS = frozenset({"form", "result_headers"})
_UPDATE_SQL: dict[tuple[str, ...], str] = {}


def _update_sql(columns: tuple[str, ...]) -> str:
    """``UPDATE tasks SET status = ?, <columns> = ? ... WHERE id = ? AND status = ?`` (cached)."""
    sql = _UPDATE_SQL.get(columns)
    if sql is None:
        sets = "".join(f", {c} = ?" for c in columns)
        sql = _UPDATE_SQL[columns] = f"UPDATE tasks SET status = ?{sets} WHERE id = ? AND status = ?"
    return sql


class TaskStore:
    """SQLite journal of tasks and blobs. See the module docstring for batching and durability."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        migrations_dir: str | os.PathLike[str] | None = None,
        blob_dir: str | os.PathLike[str] | None = None,
        inline_max: int = INLINE_BLOB_MAX,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            allowed = ", ".join(SYNCHRONOUS_MODES)
            raise StoreError(f"journal synchronous mode must be one of {allowed}, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._depth = 0
        self._begun = False
        self._savepoints: list[list[Any]] = []  # [name, state] for each savepoint() block, innermost last
        self._sp_counter = 0
        self.inline_max = max(0, int(inline_max))
        self.files = BlobFiles(
            Path(blob_dir) if blob_dir else self.path.parent / BLOB_DIR, fsync=mode in ("FULL", "EXTRA")
        )
        self._touched: set[str] = set()  # blob files written or un-referenced in this batch
        self._unwritten: dict[str, bytes] = {}  # new blob files of this batch, written just before its COMMIT
        self._unstored_inputs: list[tuple[str, str, int, bytes, float]] = []  # (task, name, position, data, now)
        self._fresh: dict[str, dict[str, bytes]] = {}  # inputs of tasks created in this batch, by task id
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open task journal {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={mode}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrations_dir = Path(migrations_dir) if migrations_dir else default_migrations_dir()
        self.applied_migrations = self._migrate()
        self.live = LiveTasks()
        self._has_priority = self._has_column("tasks", "priority")
        self._has_dispatches = bool(
            self._exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_dispatches'").fetchone()
        )
        self._has_owner = self._has_column("tasks", "owner")
        self._columns = _COLUMNS + (_PRIORITY_COLUMN if self._has_priority else _NO_PRIORITY_COLUMN)
        self._columns += _OWNER_COLUMN if self._has_owner else _NO_OWNER_COLUMN
        if self._exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'").fetchone():
            rows = self._exec(
                f"SELECT {self._columns} FROM tasks WHERE status IN ('queued', 'processing') ORDER BY seq"
            )
            for row in rows.fetchall():
                self.live.put(_record(row))
        self._file_blobs = self._has_blob_files()
        if self._file_blobs:
            keep = {r[0] for r in self._exec("SELECT sha256 FROM blobs WHERE stored = 'file'")}
            self.files.sweep(keep)

    # ------------------------------------------------------------ plumbing
    def close(self) -> None:
        self.files.close()
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

    def _has_blob_files(self) -> bool:
        """Whether the schema has ``blobs.stored`` (migration 0003); without it every blob is inline."""
        return self._has_column("blobs", "stored")

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self._exec(f"PRAGMA table_info({table})"))

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group every change made inside into one transaction (committed at the end, rolled back
        if the block raises). Nested batches join the outer one. ``BEGIN`` waits for the first write."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self._begun = False
        self.live.begin()
        try:
            yield
        except BaseException:
            self._finish(commit=False)
            raise
        self._finish(commit=True)

    def _finish(self, *, commit: bool) -> None:
        """End the outermost batch: store the inputs of the tasks it created and write its new blob
        files, then COMMIT (or ROLLBACK, index included) if anything was written; then bring the
        files it touched in line with what the journal now holds.

        Inputs are hashed and files written here, at the end, rather than where each task or blob
        was stored, so that what the batch's owner does before ending it does not wait for them: the
        scheduler sends a round's TASKs first (``service``), and a node starts on an upload while it
        is hashed and written (2-7 ms for a 1080p PNG). A file is still in place before the COMMIT
        that references it; a failed write rolls the batch back."""
        begun = self._begun
        self._savepoints.clear()
        try:
            if begun and commit:
                try:
                    self._store_inputs()
                    for digest, data in self._unwritten.items():
                        self.files.write(digest, data)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    self.live.rollback_to(0)
                    raise
            elif not commit:
                if begun:
                    self._db.execute("ROLLBACK")
                self.live.rollback_to(0)
        finally:
            self._begun, self._depth = False, 0
            self._unwritten.clear()
            self._unstored_inputs.clear()
            self.live.end()
            self._fresh.clear()
            if self._touched:
                self._reconcile_files()

    def _store_inputs(self) -> None:
        """At the end of a batch, before its files are written: hash the inputs of the tasks it
        created, store each blob once and link it to its task (see :meth:`_finish`)."""
        links: list[tuple[Any, ...]] = []
        for task_id, fname, position, data, now in self._unstored_inputs:
            digest = sha256_of(data)
            self._store_blob(digest, data, now)
            links.append((task_id, fname, position, digest))
        self._write_many(
            "INSERT INTO task_blobs (task_id, role, name, position, sha256) VALUES (?, 'input', ?, ?, ?)", links
        )

    def _reconcile_files(self) -> None:
        """After the batch ended: delete each touched file whose row is not committed (a rolled-back
        write, or a blob pruned by this batch). Rows decide; a file is never deleted before its row."""
        touched, self._touched = self._touched, set()
        for digest in touched:
            row = self._db.execute("SELECT 1 FROM blobs WHERE sha256 = ? AND stored = 'file'", (digest,)).fetchone()
            if row is None:
                self.files.unlink(digest)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the changes of this block alone if it raises (the exception propagates).

        Nothing is issued for a block that does not write. A block whose first write opens the
        batch's transaction needs no ``SAVEPOINT`` either: undoing it is a ``ROLLBACK`` of that
        transaction (the scheduler's usual case, one writing message per round: two statements
        fewer per message)."""
        with self.batch():
            self._sp_counter += 1
            entry: list[Any] = [f"sp{self._sp_counter}", _SP_PENDING]
            self._savepoints.append(entry)
            mark = self.live.mark()
            inputs_mark = len(self._unstored_inputs)
            try:
                yield
            except BaseException:
                del self._unstored_inputs[inputs_mark:]  # its tasks are undone: nothing of theirs to store
                if self._savepoints and self._savepoints[-1] is entry:
                    self._savepoints.pop()
                if entry[1] == _SP_ISSUED:
                    self._db.execute(f"ROLLBACK TO {entry[0]}")
                    self._db.execute(f"RELEASE {entry[0]}")
                elif entry[1] == _SP_AT_BEGIN:
                    self._db.execute("ROLLBACK")
                    self._begun = False
                    for outer in self._savepoints:  # they began with it; nothing of theirs is left
                        if outer[1] == _SP_AT_BEGIN:
                            outer[1] = _SP_PENDING
                self.live.rollback_to(mark)
                self._fresh.clear()
                raise
            if self._savepoints and self._savepoints[-1] is entry:
                self._savepoints.pop()
            if entry[1] == _SP_ISSUED:
                self._db.execute(f"RELEASE {entry[0]}")

    @property
    def in_batch(self) -> bool:
        return self._depth > 0

    def _exec(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def _opened(self) -> None:
        """Before a write: open the batch's transaction and any pending savepoints."""
        if not self._begun:
            self._db.execute("BEGIN IMMEDIATE")
            self._begun = True
            for entry in self._savepoints:  # nothing was written before: their start is the BEGIN
                entry[1] = _SP_AT_BEGIN
            return
        for entry in self._savepoints:
            if entry[1] == _SP_PENDING:
                self._db.execute(f"SAVEPOINT {entry[0]}")
                entry[1] = _SP_ISSUED

    def _write(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        """Run a writing statement (callers are inside ``batch()``)."""
        self._opened()
        return self._db.execute(sql, params)

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._opened()
            self._db.executemany(sql, rows)

    # ------------------------------------------------------------ blobs
    def put_blob(self, data: bytes, now: float | None = None) -> str:
        """Store ``data`` once under its sha256 and return the hash."""
        digest = sha256_of(data)
        with self.batch():
            self._store_blob(digest, data, now if now is not None else time.time())
        return digest

    def _store_blob(self, digest: str, data: bytes, now: float) -> None:
        """Insert the blob's row unless it exists; a new file-backed blob gets its file now, before
        the commit (inside a batch, so a failed write rolls the row back)."""
        if not self._file_blobs:
            self._write(
                "INSERT OR IGNORE INTO blobs (sha256, size, data, created_at) VALUES (?, ?, ?, ?)",
                (digest, len(data), sqlite3.Binary(data), now),
            )
        elif len(data) <= self.inline_max:
            self._write(
                "INSERT OR IGNORE INTO blobs (sha256, size, data, created_at, stored) VALUES (?, ?, ?, ?, 'inline')",
                (digest, len(data), sqlite3.Binary(data), now),
            )
        else:
            cur = self._write(
                "INSERT OR IGNORE INTO blobs (sha256, size, data, created_at, stored) VALUES (?, ?, x'', ?, 'file')",
                (digest, len(data), now),
            )
            if cur.rowcount == 1 or self._lost_file(digest):
                self._touched.add(digest)  # a failed or rolled-back write leaves no stray file either
                self._unwritten[digest] = data  # written by _finish, just before the COMMIT

    def _lost_file(self, digest: str) -> bool:
        """True when the blob's row says "file" but the file is gone: the same bytes restore it."""
        if digest in self._unwritten or self.files.path(digest).is_file():
            return False
        row = self._exec("SELECT stored FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        return row is not None and row[0] == "file"

    def get_blob(self, digest: str) -> bytes | None:
        """The blob's bytes; None if there is no such blob or its file was lost."""
        if not self._file_blobs:
            row = self._exec("SELECT data FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
            return bytes(row[0]) if row else None
        row = self._exec("SELECT data, stored, size FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        if row is None:
            return None
        return self._blob_bytes(digest, row[0], row[1], row[2])

    def _blob_bytes(self, digest: str, data: bytes, stored: str, size: int) -> bytes | None:
        if stored == "file":
            unwritten = self._unwritten.get(digest)  # stored in this batch: its file comes at the commit
            return unwritten if unwritten is not None else self.files.read(digest, int(size))
        return bytes(data)

    def blob_count(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM blobs").fetchone()[0])

    def inputs(self, task_id: str) -> dict[str, bytes]:
        """The task's input files, name -> bytes, in submission order. Raises :class:`BlobMissing`
        when one of them is gone (the task can then never run). A task created in the current
        batch (a SUBMIT dispatched in the same round) gets the bytes it arrived with, unread."""
        fresh = self._fresh.get(task_id)
        if fresh is not None:
            return dict(fresh)
        if not self._file_blobs:
            rows = self._exec(
                "SELECT tb.name, b.data FROM task_blobs tb JOIN blobs b ON b.sha256 = tb.sha256 "
                "WHERE tb.task_id = ? AND tb.role = 'input' ORDER BY tb.position",
                (task_id,),
            ).fetchall()
            return {r[0]: bytes(r[1]) for r in rows}
        files: dict[str, bytes] = {}
        for name, digest, data, stored, size in self._exec(
            "SELECT tb.name, b.sha256, b.data, b.stored, b.size FROM task_blobs tb "
            "JOIN blobs b ON b.sha256 = tb.sha256 WHERE tb.task_id = ? AND tb.role = 'input' ORDER BY tb.position",
            (task_id,),
        ).fetchall():
            body = self._blob_bytes(digest, data, stored, size)
            if body is None:
                raise BlobMissing(f"input {name!r} of task {task_id} is missing from {self.files.root}")
            files[name] = body
        return files

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
        priority: int = DEFAULT_PRIORITY,
        owner: str | None = None,
        now: float | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Journal a new queued task with its input blobs; returns (record, created).

        With an ``idempotency_key`` already used, nothing is written and the existing task is
        returned with ``created=False`` (and its own priority). ``priority`` (0..9, else
        ``ValueError``) places it in its queue's dispatch order.
        """
        priority = check_priority(priority)
        if idempotency_key:
            existing = self.find_by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing, False
        now = time.time() if now is None else now
        task_id = task_id or uuid.uuid4().hex
        form_dict = dict(form or {})
        max_attempts = max(1, int(max_attempts))
        if not self._has_priority:  # a journal before migration 0004 keeps no priority
            priority = DEFAULT_PRIORITY
        with self.batch():
            row: dict[str, Any] = {
                "id": task_id, "kind": kind, "name": name, "queue": queue, "status": states.QUEUED,
                "max_attempts": max_attempts, "submitter": submitter, "idempotency_key": idempotency_key or None,
                "form": json.dumps(form_dict), "created_at": now,
            }  # fmt: skip
            if self._has_priority:
                row["priority"] = priority
            if self._has_owner:
                row["owner"] = owner
            cur = self._write(
                f"INSERT INTO tasks ({', '.join(row)}) VALUES ({', '.join(':' + column for column in row)})", row
            )
            seq = int(cur.lastrowid or 0)
            # Hashed, linked and written when the batch ends (_store_inputs), after whatever its owner
            # does first (the scheduler sends the round's TASKs); until then inputs() reads _fresh.
            for position, (fname, data) in enumerate((files or {}).items()):
                self._unstored_inputs.append((task_id, fname, position, data, now))
            self._fresh[task_id] = dict(files or {})
            record = TaskRecord(
                seq=seq, id=task_id, kind=kind, name=name, queue=queue, status=states.QUEUED, attempts=0,
                max_attempts=max_attempts, dispatches=0, recoveries=0, not_before=0.0, node_id=None, progress=None,
                step=None, total_steps=None, submitter=submitter, idempotency_key=idempotency_key or None,
                form=form_dict, error=None, error_status=None, traceback=None, created_at=now, started_at=None,
                finished_at=None, result_mimetype=None, result_headers=None, result_sha256=None, duplicates=0,
                priority=priority, owner=owner if self._has_owner else None,
            )  # fmt: skip
            self.live.put(record)
        return record, True

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record: from memory while it is unfinished (or recently finished), else the journal."""
        rec = self.live.get(task_id)
        if rec is not None:
            return rec
        row = self._exec(f"SELECT {self._columns} FROM tasks WHERE id = ?", (task_id,)).fetchone()
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
        row = self._exec("SELECT id FROM tasks WHERE idempotency_key = ?", (key,)).fetchone()
        return self.get(row[0]) if row else None

    def output(self, task_id: str) -> tuple[str, dict[str, str], bytes] | None:
        """(mimetype, headers, body) of a completed task, None if it has none (or it was pruned)."""
        record = self.get(task_id)
        if record is None or record.status != states.COMPLETED or not record.result_sha256:
            return None
        body = self.get_blob(record.result_sha256)
        if body is None:
            return None
        return record.result_mimetype or "application/octet-stream", record.result_headers or {}, body

    def list(
        self, status: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None
    ) -> tuple[list[TaskRecord], int]:
        """A page of tasks, newest first, and the total matching ``status`` (None = all) and, when
        given, ``owner`` (a journal without the column has no owned task)."""
        clauses, values = [], []
        if status:
            clauses.append("status = ?")
            values.append(status)
        if owner is not None:
            clauses.append("owner = ?" if self._has_owner else "0")
            values += [owner] if self._has_owner else []
        where, params = ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(values)
        total = int(self._exec(f"SELECT COUNT(*) FROM tasks {where}", params).fetchone()[0])
        rows = self._exec(
            f"SELECT {self._columns} FROM tasks {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*params, max(0, int(limit)), max(0, int(offset))),
        ).fetchall()
        return [self.live.get(r["id"]) or _record(r) for r in rows], total

    def position(self, task_id: str) -> int | None:
        """0-based place of a queued task in its queue's dispatch order (priority, then FIFO by
        submission); None if not queued."""
        rec = self.live.get(task_id)
        return self.live.position(rec) if rec is not None else None

    def counts(self) -> dict[str, dict[str, int]]:
        """``{queue: {status: n}}`` over every task in the journal (a full scan: for monitoring)."""
        result: dict[str, dict[str, int]] = {}
        for row in self._exec("SELECT queue, status, COUNT(*) FROM tasks GROUP BY queue, status"):
            result.setdefault(row[0], {})[row[1]] = int(row[2])
        return result

    def status_counts(self) -> dict[str, int]:
        """Tasks per state over the whole journal (a full scan: for monitoring, not hot paths)."""
        totals = dict.fromkeys(states.STATES, 0)
        for row in self._exec("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
            totals[row[0]] = int(row[1])
        return totals

    def count_queued(self, queue: str | None = None) -> int:
        return self.live.queued_count(queue)

    def runnable(self, now: float, limit: int = 100, queues: list[str] | None = None) -> list[TaskRecord]:
        """Queued tasks whose retry delay has passed, in dispatch order: highest priority first,
        then FIFO by submission."""
        return list(itertools.islice(self.live.runnable(now, queues), max(1, int(limit))))

    def next_wakeup(self, now: float) -> float | None:
        """The earliest ``not_before`` still in the future among queued tasks (when a retry is due)."""
        return self.live.next_wakeup(now)

    def unfinished(self) -> list[TaskRecord]:
        return self.live.unfinished()

    # ------------------------------------------------------------ state changes
    def _move(self, task_id: str, event: str, changes: dict[str, Any]) -> TaskRecord:
        """Apply a state-machine ``event`` with new column values; journal and index change together."""
        current = self.require(task_id)
        new_status = states.transition(current.status, event)
        record = _evolve(current, changes)
        record.status = new_status
        self._update(current, record, tuple(changes))
        return record

    def _update(self, current: TaskRecord, record: TaskRecord, columns: tuple[str, ...]) -> None:
        values = [json.dumps(v) if c in _JSON_COLUMNS and v is not None else v
                  for c, v in ((c, getattr(record, c)) for c in columns)]  # fmt: skip
        with self.batch():
            cur = self._write(_update_sql(columns), (record.status, *values, current.id, current.status))
            if cur.rowcount != 1:  # pragma: no cover - single writer; would mean a concurrent writer
                raise states.IllegalTransition(current.status, "update")
            self.live.put(record)

    def mark_processing(
        self, task_id: str, node_id: str, now: float | None = None, *, peer_key: str | None = None
    ) -> TaskRecord:
        """Hand-over to ``node_id`` (whose CURVE key is ``peer_key``): charges one attempt, numbers
        the dispatch and records who got it (:meth:`dispatch_owner`)."""
        now = time.time() if now is None else now
        cur = self.require(task_id)
        changes = {"attempts": cur.attempts + 1, "dispatches": cur.dispatches + 1, "node_id": node_id,
                   "started_at": now, "progress": 0.0, "step": None, "total_steps": None}  # fmt: skip
        with self.batch():
            record = self._move(task_id, states.DISPATCH, changes)
            if self._has_dispatches:
                self._write(
                    "INSERT OR REPLACE INTO task_dispatches (task_id, attempt, node_id, peer_key, dispatched_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (task_id, record.dispatches, node_id, peer_key, now),
                )
        return record

    def dispatch_owner(self, task_id: str, attempt: int) -> tuple[str, str | None] | None:
        """``(node_id, peer_key)`` that dispatch ``attempt`` of the task went to; None if it was never
        handed out (or before migration 0006 recorded hand-overs)."""
        if not self._has_dispatches or isinstance(attempt, bool) or not isinstance(attempt, int):
            return None
        if not 0 < attempt < 2**63:  # JSON integers are unbounded; SQLite's are not
            return None
        row = self._exec(
            "SELECT node_id, peer_key FROM task_dispatches WHERE task_id = ? AND attempt = ?", (task_id, attempt)
        ).fetchone()
        return (row[0], row[1]) if row is not None else None

    def reattach(self, task_id: str, node_id: str, *, charge: bool = False) -> TaskRecord:
        """A queued task whose last dispatch is still running after all: its node lost contact (or
        the scheduler restarted) and came back naming it. Back to processing on that node with the
        same dispatch number, so it is not run a second time. ``charge`` re-charges an attempt
        that start-up recovery refunded (the attempt goes on, so it counts again)."""
        cur = self.require(task_id)
        changes = {"attempts": cur.attempts + (1 if charge else 0), "node_id": node_id, "not_before": 0.0,
                   "progress": 0.0, "step": None, "total_steps": None}  # fmt: skip
        return self._move(task_id, states.DISPATCH, changes)

    def undo_dispatch(self, task_id: str) -> TaskRecord:
        """The TASK never left this process (the node vanished first): back to queued, attempt refunded."""
        cur = self.require(task_id)
        changes = {"attempts": max(0, cur.attempts - 1), "node_id": None, "progress": None}
        return self._move(task_id, states.RETRY, changes)

    def set_progress(
        self, task_id: str, percent: float, step: int | None = None, total_steps: int | None = None
    ) -> None:
        cur = self.get(task_id)
        if cur is None or cur.status != states.PROCESSING:
            return
        record = _evolve(cur, {"progress": float(percent), "step": step, "total_steps": total_steps})
        self._update(cur, record, ("progress", "step", "total_steps"))

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
        cur = self.require(task_id)
        states.transition(cur.status, states.COMPLETE)  # refuse before writing the blob
        with self.batch():
            digest = result_key()
            self._store_blob(digest, body, now)
            changes = {"finished_at": now, "progress": 100.0, "result_mimetype": mimetype,
                       "result_headers": dict(headers), "result_sha256": digest,
                       "node_id": node_id if node_id is not None else cur.node_id, "error": None,
                       "error_status": None, "traceback": None}  # fmt: skip
            # ``tasks.result_sha256`` (indexed) is the only link to the result: retention keeps a blob
            # while a task names it there. Journals from before 2026-11-29 also have an 'output'
            # row in task_blobs for it, which goes with its task; new ones skip that write (three
            # B-tree pages of every completing commit).
            record = self._move(task_id, states.COMPLETE, changes)
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
        changes = {"finished_at": now, "error": error, "traceback": traceback, "error_status": status}
        return self._move(task_id, states.FAIL, changes)

    def retry(
        self, task_id: str, *, not_before: float, error: str | None = None, traceback: str | None = None
    ) -> TaskRecord:
        """Back to queued after a failed/lost attempt (already charged at dispatch), due at ``not_before``."""
        cur = self.require(task_id)
        changes = {"not_before": float(not_before), "node_id": None, "progress": None, "step": None,
                   "total_steps": None, "error": error if error is not None else cur.error,
                   "traceback": traceback if traceback is not None else cur.traceback}  # fmt: skip
        return self._move(task_id, states.RETRY, changes)

    def cancel(self, task_id: str, now: float | None = None) -> TaskRecord:
        """Cancelled (queued: never dispatched afterwards; processing: any later result is discarded)."""
        now = time.time() if now is None else now
        return self._move(task_id, states.CANCEL, {"finished_at": now, "error": "Task was cancelled"})

    def add_duplicate(self, task_id: str) -> None:
        with self.batch():
            self._write("UPDATE tasks SET duplicates = duplicates + 1 WHERE id = ?", (task_id,))
            cached = self.live.get(task_id)
            if cached is not None:
                self.live.put(_evolve(cached, {"duplicates": cached.duplicates + 1}))

    # ------------------------------------------------------------ recovery and retention
    def recover(self, now: float | None = None) -> RecoveryReport:
        """After a restart: queued tasks stay queued; tasks that were processing go back to queued
        (their node may still be running them and reclaim them with :meth:`reattach`).

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
                    message = f"interrupted by {record.recoveries + 1} scheduler restarts; no attempts left"
                    changes = {"finished_at": now, "error": message, "recoveries": record.recoveries + 1,
                               "node_id": None}  # fmt: skip
                    self._move(record.id, states.FAIL, changes)
                    report.failed.append(record.id)
                    continue
                refund = 1 if free else 0
                changes = {"attempts": max(0, record.attempts - refund), "recoveries": record.recoveries + 1,
                           "not_before": 0.0, "node_id": None, "progress": None, "step": None,
                           "total_steps": None}  # fmt: skip
                self._move(record.id, states.RECOVER, changes)
                report.requeued.append(record.id)
                if not free:
                    report.charged.append(record.id)
                else:
                    report.refunded.append(record.id)
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
                self._write("INSERT OR IGNORE INTO tombstones (id, expired_at) VALUES (?, ?)", (task_id, now))
                self._write("DELETE FROM tasks WHERE id = ?", (task_id,))  # task_blobs rows cascade
                self.live.forget(task_id)
            stored = "b.stored" if self._file_blobs else "'inline'"
            unused = self._exec(
                f"SELECT b.sha256, {stored} FROM blobs b "
                "WHERE NOT EXISTS (SELECT 1 FROM task_blobs tb WHERE tb.sha256 = b.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.result_sha256 = b.sha256) LIMIT ?",
                (limit,),
            ).fetchall()
            self._write_many("DELETE FROM blobs WHERE sha256 = ?", [(r[0],) for r in unused])
            self._touched.update(r[0] for r in unused if r[1] == "file")  # unlinked after the commit
            blobs = len(unused)
            self._write("DELETE FROM tombstones WHERE expired_at < ?", (older_than,))
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
