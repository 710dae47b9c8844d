"""The embedded scheduler's crash handler (on the scheduler thread) and ``DistributedExecutor.close``
(on the shutting-down thread) close the same client: together they finish within a deadline, and a
client I/O thread that will not stop can no longer hang the scheduler thread in ``ctx.term()``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.producer import executor as executor_mod
from lama_cleaner.plugins.distributed.producer.executor import DistributedExecutor
from lama_cleaner.tasks import TaskRequest
from tests.support.distributed_config import FAKE_PLUGIN, FAST
from tests.support.waiting import wait_for

from .conftest import mask_png, png, task_form


class Events:
    """An event sink whose ``emit`` can be made to block (a stuck Socket.IO emit, say)."""

    def __init__(self) -> None:
        self.block = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def emit(self, event: Any) -> None:
        if self.block:
            self.entered.set()
            self.release.wait(60)


def _executor(tmp_path: Path, events: Events) -> DistributedExecutor:
    config = Config(model="cv2", device="cpu", plugins=["distributed", FAKE_PLUGIN])
    d = config.distributed
    d.scheduler_bind = "tcp://127.0.0.1:0"
    d.data_dir = str(tmp_path / "journal")
    d.local_nodes = 0
    d.unschedulable_timeout_s = 0
    d.heartbeat_interval_s = FAST["distributed"]["heartbeat_interval_s"]
    return DistributedExecutor(config, events, start_local_nodes=False)


def _crash(scheduler: Any) -> None:
    def broken(now: float) -> float:
        raise RuntimeError("injected loop failure")

    scheduler._poll_timeout = broken  # the loop calls it every iteration: it dies on the next one
    scheduler._wake()


def _task() -> TaskRequest:
    files = {"image": png(), "mask": mask_png()}
    return TaskRequest(kind="inpaint", name="cv2", form=task_form(), files=files)


def test_crash_and_close_at_the_same_time_finish_within_a_deadline(tmp_path):
    events = Events()
    executor = _executor(tmp_path, events)
    scheduler, client = executor.scheduler, executor.client
    assert client is not None
    executor.submit(_task())
    errors: list[BaseException] = []
    # The closer starts when the crash handler does, so both close the client at the same time (a
    # closer started earlier could stop the loop before it crashes, and nothing would race).
    both = threading.Barrier(2)
    crash_handler = scheduler.on_crash

    def racing_crash_handler(exc: BaseException) -> None:
        both.wait(10)
        crash_handler(exc)

    scheduler.on_crash = racing_crash_handler

    def close() -> None:
        try:
            both.wait(10)
            executor.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    closer = threading.Thread(target=close)
    started = time.monotonic()
    _crash(scheduler)
    closer.start()
    closer.join(20)
    assert not closer.is_alive() and errors == []
    assert scheduler.join(20), "the scheduler thread did not end"
    assert time.monotonic() - started < 20
    assert isinstance(scheduler.crashed, RuntimeError)
    assert not client._thread.is_alive() and client._wake_r == client._wake_w == -1
    assert scheduler.context is None  # terminated by the scheduler thread, once
    executor.close()  # a second close changes nothing


def test_stuck_client_thread_cannot_hang_the_crashing_scheduler_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(executor_mod, "CLIENT_CLOSE_TIMEOUT_S", 0.3)
    events = Events()
    executor = _executor(tmp_path, events)
    scheduler, client = executor.scheduler, executor.client
    assert client is not None
    try:
        info = executor.submit(_task())
        events.block = True
        executor.client.send_request("CANCEL", {"task_id": info.id})  # its "cancelled" EVENT blocks the I/O thread
        wait_for(events.entered.is_set, 10, "the client's I/O thread to block in emit")
        context = scheduler.context
        _crash(scheduler)
        # Without the fix the scheduler thread blocks in ctx.term() until the client's socket closes.
        assert scheduler.join(10), "the scheduler thread hung (ctx.term() with the client's socket open)"
        assert isinstance(scheduler.crashed, RuntimeError)
        assert client._thread.is_alive() and not context.closed  # left, not terminated under it
    finally:
        events.release.set()
    executor.close()  # the client's thread ends now; the context it used is terminated here
    assert not client._thread.is_alive()
    assert context.closed


@pytest.mark.parametrize("closers", [2, 6])
def test_executor_close_from_several_threads(tmp_path, closers):
    executor = _executor(tmp_path, Events())
    scheduler, client = executor.scheduler, executor.client
    barrier = threading.Barrier(closers)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            barrier.wait(5)
            executor.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(closers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert scheduler.join(10) and not client._thread.is_alive()
