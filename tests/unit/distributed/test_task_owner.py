"""Task owners in the journal (migration 0005): kept on create, read back after a reopen, filtered by
``list(owner=...)``; a journal migrated only to 0004 has no owned task. The API's ownership rules
build on this (tests/unit/api/test_api_tokens.py)."""

from __future__ import annotations

import shutil

import pytest

from lama_cleaner.errors import ClientError
from lama_cleaner.plugins.distributed.journal.task_store import TaskStore, default_migrations_dir
from lama_cleaner.plugins.distributed.producer.translate import submit_message
from lama_cleaner.plugins.distributed.scheduler.producer_handlers import parse_owner
from lama_cleaner.tasks import TaskRequest


def new(store: TaskStore, owner: str | None):
    return store.create_task(kind="inpaint", name="cv2", queue="cpu", max_attempts=1, owner=owner)[0]


def test_owners_are_journaled_and_listed_per_owner(tmp_path):
    path = tmp_path / "journal.sqlite3"
    with TaskStore(path) as store:
        alice = [new(store, "alice").id for _ in range(3)]
        bob = new(store, "bob").id
        anonymous = new(store, None).id
        records, total = store.list(owner="alice", limit=2)
        assert [r.id for r in records] == alice[::-1][:2] and total == 3
        assert store.list()[1] == 5
    with TaskStore(path) as reopened:
        assert reopened.get(bob).owner == "bob" and reopened.get(anonymous).owner is None
        assert [r.id for r in reopened.list(status="queued", owner="bob")[0]] == [bob]


def test_a_journal_before_0005_has_no_owned_tasks(tmp_path):
    old = tmp_path / "migrations"
    old.mkdir()
    for sql in sorted(default_migrations_dir().glob("*.sql")):
        if sql.name < "0005":
            shutil.copy(sql, old / sql.name)
    with TaskStore(tmp_path / "j.sqlite3", migrations_dir=old) as store:
        rec = new(store, "alice")
        assert rec.owner is None and store.get(rec.id).owner is None
        assert store.list(owner="alice") == ([], 0)


def test_submit_carries_the_owner_only_when_there_is_one():
    header, _ = submit_message(TaskRequest(kind="inpaint", name="cv2", owner="alice"))
    assert parse_owner(header["task"]) == "alice"
    header, _ = submit_message(TaskRequest(kind="inpaint", name="cv2"))
    assert "owner" not in header["task"] and parse_owner(header["task"]) is None
    for bad in (7, "", "x" * 201):
        with pytest.raises(ClientError):
            parse_owner({"owner": bad})
