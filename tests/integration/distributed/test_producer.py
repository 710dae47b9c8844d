"""``SchedulerClient`` and ``DistributedExecutor`` against a real in-process scheduler (real sockets,
real SQLite): thread safety, clear errors when the scheduler is away, reconnect after a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lama_cleaner.config import load_config
from lama_cleaner.errors import ClientError, NotFound, Overloaded, TaskCancelled, TaskFailed
from lama_cleaner.plugins.distributed import protocol as p
from lama_cleaner.plugins.distributed.executor import error_from_reply
from lama_cleaner.plugins.distributed.producer import SchedulerClient, SchedulerUnavailable
from lama_cleaner.plugins.distributed.scheduler import Scheduler

from .conftest import FAST, free_port_block, mask_png, png, task_form, wait_for


def _config(tmp_path: Path):
    config = load_config(None)
    config.distributed.heartbeat_interval_s = FAST["distributed"]["heartbeat_interval_s"]
    config.distributed.data_dir = str(tmp_path / "data")
    config.distributed.scheduler_bind = f"tcp://127.0.0.1:{free_port_block()}"
    return config


def _scheduler(config) -> Scheduler:
    return Scheduler(config, lambda kind, name: "cpu" if name in ("cv2", "sleep") else None).start()


def _submit(client: SchedulerClient, key: str | None = None) -> p.Message:
    header = {
        "task": {"kind": "inpaint", "name": "sleep", "form": task_form(), "submitter": None, "idempotency_key": key},
        "blobs": ["image", "mask"],
    }
    return client.request(p.SUBMIT, header, [png(), mask_png()])


def test_unreachable_scheduler_fails_clearly_with_503(tmp_path: Path):
    config = _config(tmp_path)
    client = SchedulerClient(config.distributed.scheduler_bind, config, request_timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(SchedulerUnavailable) as info:
            client.request(p.QUEUES, {})
        assert time.monotonic() - started < 3
        assert info.value.status == 503 and info.value.retry_after == config.distributed.retry_after_s
    finally:
        client.close()


def test_concurrent_requests_from_many_threads_get_their_own_replies(tmp_path: Path):
    config = _config(tmp_path)
    scheduler = _scheduler(config)
    client = SchedulerClient(config.distributed.scheduler_bind, config)
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            accepted = _submit(client, key=f"k{i}")
            task_id = accepted.header["task"]["id"]
            info = client.request(p.GET, {"task_id": task_id})
            assert info.header["task"]["id"] == task_id
            results[i] = task_id
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert len(set(results.values())) == 16
        # The same idempotency key returns the same task instead of a second one.
        assert _submit(client, key="k3").header["task"]["id"] == results[3]
    finally:
        client.close()
        scheduler.close()


def test_client_reconnects_and_resubscribes_after_a_scheduler_restart(tmp_path: Path):
    config = _config(tmp_path)
    events: list[dict] = []
    scheduler = _scheduler(config)
    client = SchedulerClient(config.distributed.scheduler_bind, config, on_event=events.append)
    try:
        first = _submit(client).header["task"]["id"]
        wait_for(lambda: any(e["task_id"] == first for e in events), 10, "an EVENT for the first task")
        scheduler.close()
        scheduler = _scheduler(config)  # same port, same journal
        wait_for(lambda: _submit(client).header["task"]["id"], 20, "a SUBMIT after the restart")
        after: set[str] = set()

        def resubscribed() -> bool:
            # Events published before our next keepalive WATCH reached the new scheduler are not
            # ours to see (the executor re-checks with GET); the keepalive restores the stream.
            after.add(_submit(client).header["task"]["id"])
            return any(e["task_id"] in after for e in events)

        wait_for(resubscribed, 10, "EVENTs again after the restart")
        info = client.request(p.GET, {"task_id": first})
        assert info.header["task"]["status"] == "queued"  # recovered from the journal
    finally:
        client.close()
        scheduler.close()


@pytest.mark.parametrize(
    ("header", "expected", "status"),
    [
        ({"status": 503, "code": "overloaded", "message": "full", "retry_after": 9}, Overloaded, 503),
        ({"status": 409, "code": "cancelled", "message": "Task was cancelled"}, TaskCancelled, 409),
        ({"status": 500, "code": "task_failed", "message": "boom"}, TaskFailed, 500),
        ({"status": 404, "code": "not_found", "message": "no such task"}, NotFound, 404),
        ({"status": 400, "code": "unknown_task", "message": "bad model"}, ClientError, 400),
    ],
)
def test_rejections_map_to_the_errors_the_http_edge_knows(header, expected, status):
    err = error_from_reply(header)
    assert isinstance(err, expected) and err.status == status and err.message == header["message"]
    if isinstance(err, Overloaded):
        assert err.retry_after == 9
