"""The store's in-memory live index stays identical to the journal, through commits and rollbacks,
and the store issues no statement it does not need (lazy BEGIN / SAVEPOINT)."""

from __future__ import annotations

import random

import pytest

from lama_cleaner.plugins.distributed.journal import states
from lama_cleaner.plugins.distributed.journal.task_store import TaskStore


@pytest.fixture
def path(tmp_path):
    return tmp_path / "journal.sqlite3"


def new(store: TaskStore, queue: str = "cpu", **kw):
    return store.create_task(kind="inpaint", name="cv2", queue=queue, max_attempts=3, form={"a": "1"},
                             files={"image": b"IMG"}, **kw)[0]  # fmt: skip


def journal_view(path) -> dict[str, tuple]:
    """What a freshly opened store (loading from SQLite only) holds about unfinished tasks."""
    with TaskStore(path) as fresh:
        return {r.id: _key(r) for r in fresh.unfinished()}


def _key(rec) -> tuple:
    return (rec.status, rec.queue, rec.attempts, rec.dispatches, rec.node_id, rec.progress, rec.not_before, rec.error)


def memory_view(store: TaskStore) -> dict[str, tuple]:
    return {r.id: _key(r) for r in store.unfinished()}


def test_fifo_positions_delays_and_counts_come_from_memory(path):
    with TaskStore(path) as store:
        a, b, c = new(store), new(store), new(store, queue="gpu")
        assert [store.position(t.id) for t in (a, b, c)] == [0, 1, 0]
        assert store.count_queued() == 3 and store.count_queued("cpu") == 2
        store.mark_processing(a.id, "n1", now=1.0)
        store.retry(a.id, not_before=100.0, error="lost")
        # a keeps its place in line (FIFO by submission) but is not runnable before its backoff
        assert store.position(a.id) == 0 and store.position(b.id) == 1
        assert [r.id for r in store.runnable(now=50.0)] == [b.id, c.id]
        assert [r.id for r in store.runnable(now=100.0, queues=["cpu"])] == [a.id, b.id]
        assert store.next_wakeup(now=50.0) == 100.0 and store.next_wakeup(now=100.0) is None
        assert store.live.processing_count("cpu") == 0
        store.mark_processing(b.id, "n2")
        assert store.live.processing_count("cpu") == 1 and store.count_queued("cpu") == 1


def test_records_are_values_a_change_never_alters_a_record_handed_out(path):
    with TaskStore(path) as store:
        before = new(store)
        after = store.mark_processing(before.id, "n1")
        assert before.status == states.QUEUED and before.attempts == 0
        assert after.status == states.PROCESSING and after.attempts == 1
        assert store.get(before.id) is after


def test_failed_savepoint_restores_the_index_with_the_journal(path):
    with TaskStore(path) as store:
        kept = new(store)
        doomed = new(store)
        with store.batch():
            store.mark_processing(kept.id, "n1")
            with pytest.raises(RuntimeError), store.savepoint():
                store.mark_processing(doomed.id, "n2")
                new(store)  # a task created and then undone
                raise RuntimeError("handler bug after writing")
        assert store.get(kept.id).status == states.PROCESSING
        assert store.get(doomed.id).status == states.QUEUED and store.get(doomed.id).attempts == 0
        assert memory_view(store) == journal_view(path)
        assert store.count_queued() == 1


def test_failed_batch_restores_the_index_and_finished_cache(path):
    with TaskStore(path) as store:
        t = new(store)
        store.mark_processing(t.id, "n1")
        with pytest.raises(OSError), store.batch():
            store.complete(t.id, mimetype="image/png", headers={}, body=b"OUT")
            assert store.get(t.id).status == states.COMPLETED
            raise OSError("disk full")
        assert store.get(t.id).status == states.PROCESSING
        assert store.output(t.id) is None
        assert memory_view(store) == journal_view(path)


def test_random_history_keeps_memory_equal_to_journal(path):
    rng = random.Random(7)
    with TaskStore(path) as store:
        for step in range(300):
            live = store.unfinished()
            op = rng.random()
            try:
                with store.batch():
                    if op < 0.3 or not live:
                        new(store, queue=rng.choice(["cpu", "gpu"]))
                    else:
                        rec = rng.choice(live)
                        if rec.status == states.QUEUED:
                            if rng.random() < 0.8:
                                store.mark_processing(rec.id, "n")
                            else:
                                store.cancel(rec.id)
                        else:
                            action = rng.choice(["complete", "retry", "fail", "progress"])
                            if action == "complete":
                                store.complete(rec.id, mimetype="image/png", headers={}, body=b"%d" % step)
                            elif action == "retry":
                                store.retry(rec.id, not_before=rng.choice([0.0, 1e12]))
                            elif action == "fail":
                                store.fail(rec.id, error="x")
                            else:
                                store.set_progress(rec.id, 50.0, 1, 2)
                    if rng.random() < 0.2:
                        raise RuntimeError("roll this one back")
            except RuntimeError:
                pass
        assert memory_view(store) == journal_view(path)
        queued = sorted((r.seq, r.id) for r in store.unfinished() if r.status == states.QUEUED and r.queue == "cpu")
        assert [store.position(i) for _, i in queued] == list(range(len(queued)))


def test_reads_open_no_transaction_and_writes_open_one(path):
    with TaskStore(path) as store:
        t = new(store)
        seen: list[str] = []
        store._db.set_trace_callback(seen.append)
        with store.batch(), store.savepoint():
            store.get(t.id)
            store.position(t.id)
            store.count_queued()
            store.runnable(now=1.0)
        assert seen == []  # nothing written: no BEGIN, no SAVEPOINT, no COMMIT
        with store.batch():
            with store.savepoint():
                store.mark_processing(t.id, "n1")
            with store.savepoint():
                store.get(t.id)  # reads only: no savepoint for it
        kinds = [s.split()[0] for s in seen]
        # The first writer's savepoint is the transaction's own start: no SAVEPOINT/RELEASE for it.
        # A dispatch is the task's UPDATE and its task_dispatches row (who got the attempt).
        assert kinds == ["BEGIN", "UPDATE", "INSERT", "COMMIT"]
