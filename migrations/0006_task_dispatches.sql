-- Which node (and, with CURVE, which client key) each dispatch of a task went to, so that the
-- scheduler accepts a RESULT, FAILED, PROGRESS or a reconnecting node's claim only from the node the
-- attempt was handed to (docs/security.md). One row per TASK sent; removed with its task.
CREATE TABLE task_dispatches (
    task_id       TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,                 -- tasks.dispatches at the hand-over (the wire attempt)
    node_id       TEXT NOT NULL,
    peer_key      TEXT,                             -- Z85 CURVE public key of the node; NULL without CURVE
    dispatched_at REAL NOT NULL,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;
