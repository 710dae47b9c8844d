-- Task journal of the distributed scheduler (lama_cleaner/plugins/distributed/task_store.py).
-- Applied once, in file-name order, inside one transaction per file; recorded in schema_version.

CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- Content-addressed payloads (input images, masks, result bodies); shared between tasks.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE tasks (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order (kept across retries)
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    queue           TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,   -- attempts charged to the retry budget
    max_attempts    INTEGER NOT NULL,
    dispatches      INTEGER NOT NULL DEFAULT 0,   -- hand-overs to nodes; the wire "attempt" number
    recoveries      INTEGER NOT NULL DEFAULT 0,   -- scheduler restarts that interrupted this task
    not_before      REAL NOT NULL DEFAULT 0,      -- retry backoff: not dispatched before this time
    node_id         TEXT,
    progress        REAL,
    step            INTEGER,
    total_steps     INTEGER,
    submitter       TEXT,
    idempotency_key TEXT UNIQUE,
    form            TEXT NOT NULL DEFAULT '{}',   -- JSON object of form strings
    error           TEXT,
    error_status    INTEGER,
    traceback       TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    result_mimetype TEXT,
    result_headers  TEXT,                         -- JSON object
    result_sha256   TEXT REFERENCES blobs (sha256),
    duplicates      INTEGER NOT NULL DEFAULT 0    -- results discarded because one was already taken
);

CREATE INDEX tasks_by_status_queue ON tasks (status, queue, seq);
CREATE INDEX tasks_by_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- Which blobs a task uses: its input files (role 'input', in order) and its result (role 'output').
CREATE TABLE task_blobs (
    task_id  TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    role     TEXT NOT NULL CHECK (role IN ('input', 'output')),
    name     TEXT NOT NULL,
    position INTEGER NOT NULL,
    sha256   TEXT NOT NULL REFERENCES blobs (sha256),
    PRIMARY KEY (task_id, role, name)
);

CREATE INDEX task_blobs_by_sha ON task_blobs (sha256);

-- Ids of pruned tasks, so that a late GET/FETCH answers 410 "expired" instead of 404.
CREATE TABLE tombstones (
    id         TEXT PRIMARY KEY,
    expired_at REAL NOT NULL
);
