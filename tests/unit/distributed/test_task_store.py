"""task_store.py against a real SQLite file: migrations, state changes, recovery, retention."""

from __future__ import annotations

import sqlite3

import pytest

from lama_cleaner.plugins.distributed.journal import states
from lama_cleaner.plugins.distributed.journal.task_store import MAX_FREE_RECOVERIES, StoreError, TaskStore, sha256_of


@pytest.fixture
def path(tmp_path):
    return tmp_path / "j" / "journal.sqlite3"


def new(store: TaskStore, name="cv2", queue="cpu", **kw):
    kw.setdefault("files", {"image": b"IMG", "mask": b"MASK"})
    rec, created = store.create_task(kind="inpaint", name=name, queue=queue, max_attempts=3, form={"a": "1"}, **kw)
    return rec


def test_migrations_applied_once_and_wal(path):
    with TaskStore(path) as store:
        assert store.applied_migrations == [
            "0001_initial.sql",
            "0002_result_blob_index.sql",
            "0003_blob_files.sql",
            "0004_task_priority.sql",
            "0005_task_owner.sql",
            "0006_task_dispatches.sql",
        ]
        assert store.schema_version() == 6
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with TaskStore(path, synchronous="full") as store:
        assert store.applied_migrations == []
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    rows = sqlite3.connect(path).execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
    assert rows == [
        (1, "0001_initial.sql"),
        (2, "0002_result_blob_index.sql"),
        (3, "0003_blob_files.sql"),
        (4, "0004_task_priority.sql"),
        (5, "0005_task_owner.sql"),
        (6, "0006_task_dispatches.sql"),
    ]


def test_bad_synchronous_and_missing_migrations(path, tmp_path, monkeypatch):
    with pytest.raises(StoreError, match="synchronous"):
        TaskStore(path, synchronous="sometimes")
    with pytest.raises(StoreError, match="does not exist"):
        TaskStore(path, migrations_dir=tmp_path / "nowhere")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "0001_broken.sql").write_text("CREATE TABLE x (;\n")
    with pytest.raises(StoreError, match="0001_broken.sql"):
        TaskStore(tmp_path / "other.db", migrations_dir=tmp_path / "m")


def test_migrations_dir_from_env(path, tmp_path, monkeypatch):
    mig = tmp_path / "mig"
    mig.mkdir()
    (mig / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (mig / "0002_b.sql").write_text("-- comment; with a semicolon\nCREATE TABLE b (y TEXT);\n")
    monkeypatch.setenv("LAMA_CLEANER_MIGRATIONS_DIR", str(mig))
    with TaskStore(path) as store:
        assert store.applied_migrations == ["0001_a.sql", "0002_b.sql"]
        assert store.schema_version() == 2


def test_journal_survives_reopen_with_blobs_deduplicated(path):
    with TaskStore(path) as store:
        a = new(store)
        b = new(store, files={"image": b"IMG", "mask": b"OTHER"})
        assert store.blob_count() == 3  # IMG shared
    with TaskStore(path) as store:
        got = store.get(a.id)
        assert got is not None and got.status == "queued" and got.form == {"a": "1"}
        assert store.inputs(b.id) == {"image": b"IMG", "mask": b"OTHER"}
        assert store.get_blob(sha256_of(b"IMG")) == b"IMG"


def test_idempotency_key_returns_existing(path):
    with TaskStore(path) as store:
        first, created = store.create_task(kind="inpaint", name="cv2", queue="cpu", max_attempts=3,
                                           idempotency_key="k1")  # fmt: skip
        again, created_again = store.create_task(kind="inpaint", name="lama", queue="gpu", max_attempts=3,
                                                 idempotency_key="k1")  # fmt: skip
        assert created and not created_again and again.id == first.id and again.name == "cv2"
        assert store.list()[1] == 1


def test_lifecycle_positions_counts_and_output(path):
    with TaskStore(path) as store:
        t1, t2, t3 = new(store), new(store), new(store, queue="gpu", name="lama")
        assert [store.position(t.id) for t in (t1, t2, t3)] == [0, 1, 0]
        assert [r.id for r in store.runnable(now=1e12)] == [t1.id, t2.id, t3.id]
        p1 = store.mark_processing(t1.id, "node-a", now=10.0)
        assert (p1.status, p1.attempts, p1.dispatches, p1.node_id) == ("processing", 1, 1, "node-a")
        assert p1.started_at == 10.0
        assert store.position(t2.id) == 0 and store.position(t1.id) is None
        store.set_progress(t1.id, 40.0, 2, 5)
        assert store.get(t1.id).progress == 40.0
        done = store.complete(t1.id, mimetype="image/png", headers={"X-Seed": "1"}, body=b"OUT", now=11.0)
        assert done.status == "completed" and done.finished_at == 11.0 and done.progress == 100
        assert store.output(t1.id) == ("image/png", {"X-Seed": "1"}, b"OUT")
        with pytest.raises(states.IllegalTransition):
            store.complete(t1.id, mimetype="image/png", headers={}, body=b"AGAIN")
        store.add_duplicate(t1.id)
        assert store.get(t1.id).duplicates == 1
        assert store.counts() == {"cpu": {"completed": 1, "queued": 1}, "gpu": {"queued": 1}}
        assert store.status_counts()["queued"] == 2
        assert store.count_queued() == 2 and store.count_queued("gpu") == 1
        cancelled = store.cancel(t2.id)
        assert cancelled.status == "cancelled" and store.runnable(now=1e12, queues=["cpu"]) == []
        page, total = store.list(limit=2)
        assert total == 3 and [r.id for r in page] == [t3.id, t2.id]  # newest first
        assert store.list(status="cancelled")[1] == 1


def test_retry_backoff_and_failure(path):
    with TaskStore(path) as store:
        t = new(store)
        store.mark_processing(t.id, "n", now=1.0)
        again = store.retry(t.id, not_before=50.0, error="lost", traceback="tb")
        assert again.status == "queued" and again.attempts == 1 and again.node_id is None
        assert store.runnable(now=49.0) == [] and [r.id for r in store.runnable(now=50.0)] == [t.id]
        assert store.next_wakeup(now=10.0) == 50.0
        store.mark_processing(t.id, "n", now=51.0)
        failed = store.fail(t.id, error="bad", traceback="Traceback", status=500, now=52.0)
        assert (failed.status, failed.error, failed.traceback, failed.attempts) == ("failed", "bad", "Traceback", 2)
        assert store.output(t.id) is None


def test_undo_dispatch_refunds_the_attempt(path):
    with TaskStore(path) as store:
        t = new(store)
        store.mark_processing(t.id, "n")
        back = store.undo_dispatch(t.id)
        assert back.status == "queued" and back.attempts == 0 and back.dispatches == 1


def test_recover_requeues_processing_and_refunds_a_bounded_number_of_times(path):
    assert MAX_FREE_RECOVERIES == 2
    with TaskStore(path) as store:
        queued, running = new(store), new(store)
        store.mark_processing(running.id, "n")
    with TaskStore(path) as store:  # restart 1: free
        report = store.recover()
        assert (report.queued, report.requeued, report.charged) == ([queued.id], [running.id], [])
        rec = store.get(running.id)
        assert (rec.status, rec.attempts, rec.recoveries, rec.node_id) == ("queued", 0, 1, None)
        store.mark_processing(running.id, "n")
    with TaskStore(path) as store:  # restart 2: still free
        assert store.recover().charged == []
        assert store.get(running.id).attempts == 0
        store.mark_processing(running.id, "n")
    with TaskStore(path) as store:  # restarts 3 and 4: charged
        assert store.recover().charged == [running.id]
        assert store.get(running.id).attempts == 1
        store.mark_processing(running.id, "n")
        assert store.recover().charged == [running.id]
        store.mark_processing(running.id, "n")
        assert store.get(running.id).attempts == 3
        report = store.recover()  # budget used up: failed instead of looping forever
        assert report.failed == [running.id]
        rec = store.get(running.id)
        assert rec.status == "failed" and "scheduler restarts" in rec.error
        assert store.get(queued.id).status == "queued"


def test_batch_commits_once_and_rolls_back_on_error(path):
    with TaskStore(path) as store:
        with pytest.raises(RuntimeError):
            with store.batch():
                new(store)
                raise RuntimeError("boom")
        assert store.list()[1] == 0
        with store.batch():
            kept = new(store)
            with pytest.raises(RuntimeError):
                with store.savepoint():
                    new(store)
                    raise RuntimeError("one bad message")
            assert store.in_batch
        assert [r.id for r in store.list()[0]] == [kept.id]


def test_a_failing_first_writer_rolls_back_the_transaction_and_later_writers_still_commit(path):
    """The savepoint of the block that opened the transaction is undone by a ROLLBACK (no SAVEPOINT
    was issued for it); later blocks of the same batch begin again, and a block writing after
    another one gets a real SAVEPOINT, so its failure keeps the earlier block's work."""
    with TaskStore(path) as store:
        seen: list[str] = []
        store._db.set_trace_callback(seen.append)
        with store.batch():
            with pytest.raises(RuntimeError), store.savepoint():
                with store.savepoint():  # nested, began with the outer one: undone together
                    new(store)
                new(store)
                raise RuntimeError("first message was bad")
            assert store.list()[1] == 0
            kept = new(store)  # inside its own savepoint in the scheduler; bare here
            with pytest.raises(RuntimeError), store.savepoint():
                new(store)
                raise RuntimeError("second message was bad")
            with store.savepoint():
                also = new(store)
        store._db.set_trace_callback(None)
        kinds = [s.split()[0] for s in seen]
        assert kinds.count("BEGIN") == 2 and kinds.count("ROLLBACK") == 2 and kinds.count("COMMIT") == 1
        assert kinds.count("SAVEPOINT") == 2  # the two blocks that wrote after `kept`
        assert {r.id for r in store.list()[0]} == {kept.id, also.id}
        assert [r.id for r in store.unfinished()] == [kept.id, also.id]  # the in-memory index agrees


def test_prune_removes_old_finished_tasks_and_unreferenced_blobs(path):
    with TaskStore(path) as store:
        old = new(store, files={"image": b"OLD-ONLY", "mask": b"SHARED"})
        store.mark_processing(old.id, "n", now=1.0)
        store.complete(old.id, mimetype="image/png", headers={}, body=b"OLD-OUT", now=2.0)
        fresh = new(store, files={"image": b"FRESH", "mask": b"SHARED"})
        running = new(store)
        store.mark_processing(running.id, "n", now=1.0)
        before = store.blob_count()
        tasks, blobs = store.prune(older_than=100.0, now=200.0)
        assert tasks == 1 and blobs == 2  # OLD-ONLY and OLD-OUT; SHARED is still used by `fresh`
        assert store.blob_count() == before - 2
        assert store.get(old.id) is None and store.is_expired(old.id)
        assert store.get(fresh.id) is not None and store.get(running.id) is not None
        assert store.inputs(fresh.id) == {"image": b"FRESH", "mask": b"SHARED"}
        assert store.prune(older_than=100.0, now=200.0) == (0, 0)
        assert store._db.execute("PRAGMA foreign_key_check").fetchall() == []
        store.prune(older_than=300.0, now=400.0)  # tombstones age out after another window
        assert not store.is_expired(old.id)


def test_a_result_is_kept_while_its_task_is_and_goes_with_it(path):
    """The task row's ``result_sha256`` is what keeps a result blob (small and file-sized alike):
    retention removes it with the last task that names it, never before."""
    big = b"R" * (200 * 1024)  # over the inline limit: a blob file
    with TaskStore(path) as store:
        done = {}
        for label, body, finished in (
            ("old", b"OLD-RESULT", 2.0),
            ("recent", b"RECENT-RESULT", 150.0),
            ("old-big", big + b"1", 2.0),
            ("recent-big", big + b"2", 150.0),
        ):
            rec = new(store, files={"image": label.encode()})
            store.mark_processing(rec.id, "n", now=1.0)
            key = store.complete(rec.id, mimetype="image/png", headers={}, body=body, now=finished).result_sha256
            done[label] = (rec.id, body, key)
        store.prune(older_than=100.0, now=200.0)
        for label in ("recent", "recent-big"):
            task_id, body, key = done[label]
            assert store.output(task_id) == ("image/png", {}, body) and store.get_blob(key) == body
        for label in ("old", "old-big"):
            task_id, body, key = done[label]
            assert store.get(task_id) is None and store.get_blob(key) is None
        # the recent big result's file is left; the old one's is gone
        assert [d for d, _ in store.files.files()] == [done["recent-big"][2]]


def test_prune_works_in_bounded_bites(path):
    with TaskStore(path) as store:
        for i in range(5):
            rec = new(store, files={"image": f"IMG{i}".encode()})
            store.mark_processing(rec.id, "n", now=1.0)
            store.complete(rec.id, mimetype="image/png", headers={}, body=f"OUT{i}".encode(), now=2.0)
        assert store.prune(older_than=100.0, now=200.0, limit=2) == (2, 2)
        assert store.prune(older_than=100.0, now=200.0, limit=2) == (2, 2)
        removed = store.prune(older_than=100.0, now=200.0, limit=2)
        assert removed[0] == 1
        while store.prune(older_than=100.0, now=200.0, limit=2) != (0, 0):
            pass
        assert store.list()[1] == 0 and store.blob_count() == 0


def test_reattach_resumes_the_same_dispatch_and_recharges_a_refund(path):
    with TaskStore(path) as store:
        task = new(store)
        store.mark_processing(task.id, "n1")
        store.retry(task.id, not_before=1e12, error="node n1 silent")  # its node was declared lost
        assert store.runnable(0.0) == []
        back = store.reattach(task.id, "n1")
        assert (back.status, back.node_id, back.dispatches, back.attempts) == ("processing", "n1", 1, 1)
        assert back.not_before == 0.0 and store.live.processing_count("cpu") == 1
        assert store.live.queued_count("cpu") == 0
    with TaskStore(path) as store:  # the scheduler restarted while it ran
        report = store.recover()
        assert report.refunded == [task.id] and store.get(task.id).attempts == 0
        back = store.reattach(task.id, "n1", charge=True)
        assert (back.status, back.dispatches, back.attempts) == ("processing", 1, 1)
    with TaskStore(path) as store:
        assert store.get(task.id).status == "processing"  # the reattachment was journaled
        store.complete(task.id, mimetype="image/png", headers={}, body=b"x")
        with pytest.raises(states.IllegalTransition):
            store.reattach(task.id, "n1")


def test_each_dispatch_records_its_node_and_key(path):
    """Who got which attempt is journaled (migration 0006), so a report from anyone else can be refused."""
    with TaskStore(path) as store:
        rec = new(store)
        assert store.dispatch_owner(rec.id, 1) is None
        store.mark_processing(rec.id, "node-a", peer_key="KEY-A")
        store.retry(rec.id, not_before=0.0)
        store.mark_processing(rec.id, "node-b")
        assert store.dispatch_owner(rec.id, 1) == ("node-a", "KEY-A")
        assert store.dispatch_owner(rec.id, 2) == ("node-b", None)
        assert store.dispatch_owner(rec.id, 3) is None
        assert store.dispatch_owner(rec.id, 2**70) is None  # a JSON integer SQLite cannot hold
        store.complete(rec.id, mimetype="image/png", headers={}, body=b"x", now=1.0)
        store.prune(older_than=2.0, now=3.0)
        assert store.dispatch_owner(rec.id, 1) is None  # removed with its task
