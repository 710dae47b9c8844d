-- Task priority: 0..9, higher runs first; within one priority, FIFO by seq. Dispatch order per queue
-- is (priority DESC, seq), kept in memory by live_tasks.py; this column makes it survive a restart.
-- Rows written before this migration (and every classic /inpaint task) have the default, 5.
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9);
