-- Retention deletes blobs that no task uses; both that check and the foreign key from
-- tasks.result_sha256 look tasks up by result blob, so index it.
CREATE INDEX IF NOT EXISTS tasks_by_result ON tasks (result_sha256) WHERE result_sha256 IS NOT NULL;
