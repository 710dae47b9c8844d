"""Task priorities in the journal and its live index: dispatch order is (priority desc, seq), and
positions, the runnable scan, rollbacks, re-queues and a reopened journal all keep that order."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3

import pytest

from lama_cleaner.errors import ClientError
from lama_cleaner.plugins.distributed.journal.live_tasks import LiveTasks
from lama_cleaner.plugins.distributed.journal.task_store import TaskStore, default_migrations_dir
from lama_cleaner.plugins.distributed.scheduler.producer_handlers import parse_submit
from lama_cleaner.tasks import DEFAULT_PRIORITY


@pytest.fixture
def path(tmp_path):
    return tmp_path / "journal.sqlite3"


def new(store: TaskStore, priority: int | None = None, queue: str = "cpu", **kw):
    if priority is not None:
        kw["priority"] = priority
    return store.create_task(kind="inpaint", name="cv2", queue=queue, max_attempts=3, files={"image": b"I"}, **kw)[0]


def order(store: TaskStore, now: float = 0.0, queues: list[str] | None = None) -> list[str]:
    return [r.id for r in store.runnable(now, limit=1000, queues=queues)]


def positions(store: TaskStore, *recs) -> list[int | None]:
    return [store.position(r.id) for r in recs]


def test_higher_priority_first_then_fifo_with_positions_in_dispatch_order(path):
    with TaskStore(path) as store:
        low1, mid1, low2, high, mid2 = new(store, 1), new(store), new(store, 1), new(store, 9), new(store, 5)
        assert mid1.priority == DEFAULT_PRIORITY
        assert order(store) == [high.id, mid1.id, mid2.id, low1.id, low2.id]
        assert positions(store, high, mid1, mid2, low1, low2) == [0, 1, 2, 3, 4]
        # the dispatcher takes the first one; everyone behind moves up, the order holds
        store.mark_processing(high.id, "n1")
        assert positions(store, high, mid1, mid2, low1, low2) == [None, 0, 1, 2, 3]


def test_queues_merge_by_priority_and_positions_are_per_queue(path):
    with TaskStore(path) as store:
        cpu_low, gpu_mid, cpu_high, gpu_high = new(store, 2), new(store, 5, "gpu"), new(store, 8), new(store, 8, "gpu")
        assert order(store) == [cpu_high.id, gpu_high.id, gpu_mid.id, cpu_low.id]
        assert order(store, queues=["cpu"]) == [cpu_high.id, cpu_low.id]
        assert positions(store, cpu_low, gpu_mid, cpu_high, gpu_high) == [1, 1, 0, 0]


def test_a_requeued_task_goes_back_to_its_place_and_a_delayed_one_is_skipped(path):
    with TaskStore(path) as store:
        a, b, c = new(store, 7), new(store, 7), new(store, 3)
        store.mark_processing(a.id, "n1")
        store.undo_dispatch(a.id)  # the TASK never left: back in line, ahead of b (older, same priority)
        assert order(store) == [a.id, b.id, c.id]
        store.mark_processing(a.id, "n1")
        store.retry(a.id, not_before=100.0, error="lost")
        assert positions(store, a, b, c) == [0, 1, 2]  # keeps its place while it waits
        assert order(store, now=50.0) == [b.id, c.id]
        assert order(store, now=100.0) == [a.id, b.id, c.id]


def test_a_rolled_back_high_priority_submission_leaves_the_order_as_it_was(path):
    with TaskStore(path) as store:
        a, b = new(store, 2), new(store, 4)
        with store.batch():
            with pytest.raises(RuntimeError), store.savepoint():
                urgent = new(store, 9)
                assert order(store) == [urgent.id, b.id, a.id] and store.position(b.id) == 1
                raise RuntimeError("handler failed")
            kept = new(store, 6)
        assert store.get(urgent.id) is None
        assert order(store) == [kept.id, b.id, a.id]
        assert positions(store, kept, b, a) == [0, 1, 2]
    with TaskStore(path) as reopened:  # the journal agrees with what memory said
        assert order(reopened) == [kept.id, b.id, a.id]


def test_live_index_undo_restores_priority_order_after_a_rollback(path):
    with TaskStore(path) as store:
        recs = {p: new(store, p) for p in (1, 5, 9)}
    live = LiveTasks()
    for rec in recs.values():
        live.put(rec)
    live.begin()
    mark = live.mark()
    live.forget(recs[9].id)
    live.put(dataclasses.replace(recs[1], status="processing"))
    assert [r.id for r in live.runnable(0.0)] == [recs[5].id]
    live.rollback_to(mark)
    live.end()
    assert [r.id for r in live.runnable(0.0)] == [recs[9].id, recs[5].id, recs[1].id]
    assert [live.position(r) for r in (recs[9], recs[5], recs[1])] == [0, 1, 2]


def test_the_order_survives_reopening_the_journal(path):
    with TaskStore(path) as store:
        ids = [new(store, p).id for p in (1, 1, 9, 5, 9)]
        store.mark_processing(ids[2], "n1")  # interrupted by the "restart": recovered into its place
    with TaskStore(path) as store:
        store.recover()
        assert order(store) == [ids[2], ids[4], ids[3], ids[0], ids[1]]
        assert [store.get(i).priority for i in ids] == [1, 1, 9, 5, 9]
        assert store.list()[0][0].priority == 9  # read back from SQLite too, not only from memory


def test_bad_priorities_are_refused_by_the_store_and_by_sqlite(path):
    with TaskStore(path) as store:
        for bad in (-1, 10, True, 5.0, "5"):
            with pytest.raises(ValueError, match="priority must be an integer from 0 to 9"):
                new(store, bad)  # type: ignore[arg-type]
        assert store.count_queued() == 0
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute(
            "INSERT INTO tasks (id, kind, name, queue, status, max_attempts, created_at, priority) "
            "VALUES ('x', 'inpaint', 'cv2', 'cpu', 'queued', 1, 0, 10)"
        )


def test_a_journal_from_before_priorities_migrates_with_the_default(path, tmp_path):
    old_migrations = tmp_path / "old-migrations"
    old_migrations.mkdir()
    for sql in sorted(default_migrations_dir().glob("000[123]_*.sql")):
        shutil.copy(sql, old_migrations / sql.name)
    with TaskStore(path, migrations_dir=old_migrations) as store:
        assert store.schema_version() == 3
        old_a, old_b = new(store, 9), new(store)  # no column to keep it in: both are 5
        assert (old_a.priority, old_b.priority) == (DEFAULT_PRIORITY, DEFAULT_PRIORITY)
        assert order(store) == [old_a.id, old_b.id]
    with TaskStore(path) as store:
        assert store.applied_migrations == ["0004_task_priority.sql", "0005_task_owner.sql", "0006_task_dispatches.sql"]
        assert [store.get(i).priority for i in (old_a.id, old_b.id)] == [DEFAULT_PRIORITY, DEFAULT_PRIORITY]
        urgent, later = new(store, 9), new(store, 1)
        assert order(store) == [urgent.id, old_a.id, old_b.id, later.id]


@pytest.mark.parametrize("bad", [-1, 10, 7.0, "7", True, [], {}])
def test_submit_refuses_a_priority_that_is_not_an_integer_0_to_9(bad):
    with pytest.raises(ClientError, match="priority must be an integer from 0 to 9") as info:
        parse_submit({"kind": "inpaint", "name": "cv2", "priority": bad})
    assert info.value.status == 400


def test_submit_priority_is_optional():
    assert parse_submit({"kind": "inpaint", "name": "cv2"})[-1] == DEFAULT_PRIORITY
    assert parse_submit({"kind": "inpaint", "name": "cv2", "priority": None})[-1] == DEFAULT_PRIORITY
    assert parse_submit({"kind": "inpaint", "name": "cv2", "priority": 0})[-1] == 0
    assert parse_submit({"kind": "inpaint", "name": "cv2", "priority": 9})[-1] == 9
