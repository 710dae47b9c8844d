-- The API token's name that submitted a task (server/auth.py): a `tasks`-scoped token lists, reads and
-- cancels only the tasks it owns. NULL for classic requests, for tasks submitted while no token was
-- configured, and for rows written before this migration (only an admin token, or no token, sees those).
ALTER TABLE tasks ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS tasks_owner_seq ON tasks (owner, seq);
