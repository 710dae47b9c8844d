"""``SchedulerClient.close`` is idempotent and thread-safe (shutdown and an embedded scheduler's
crash handler close the same client at the same time), never closes or writes a pipe fd that may
already belong to someone else, and says whether its socket is really closed."""

from __future__ import annotations

import os
import threading

from lama_cleaner.plugins.distributed.producer import client as client_module
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import make_config
from tests.support.waiting import wait_for


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_concurrent_close_closes_each_fd_once_and_every_caller_waits(scheduler_factory, tmp_path, monkeypatch):
    sched = scheduler_factory()
    client = SchedulerClient(sched.control_endpoint, make_config(tmp_path))
    client.request(p.NODES, {})  # connected and working
    fds = (client._wake_r, client._wake_w)
    closes: list[int] = []
    real_close = os.close

    def counting_close(fd: int) -> None:
        if fd in fds:
            closes.append(fd)
        real_close(fd)

    monkeypatch.setattr(client_module.os, "close", counting_close)
    barrier = threading.Barrier(8)
    outcomes: list[tuple[bool, bool]] = []
    errors: list[BaseException] = []

    def closer() -> None:
        try:
            barrier.wait(5)
            stopped = client.close()
            outcomes.append((stopped, client._thread.is_alive()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=closer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and errors == []
    # every caller returned only once the I/O thread had ended (its socket closed), and said so
    assert outcomes == [(True, False)] * 8
    assert sorted(closes) == sorted(fds)  # each pipe fd closed exactly once
    assert client.close() is True  # and again, later: nothing left to do


def test_wake_after_close_never_writes_into_a_reused_fd(scheduler_factory, tmp_path):
    sched = scheduler_factory()
    client = SchedulerClient(sched.control_endpoint, make_config(tmp_path))
    old_w = client._wake_w
    assert client.close()
    # Files opened now take the lowest free fd numbers: open until one gets the pipe's old number.
    opened: list[tuple[int, str]] = []
    try:
        for i in range(256):
            name = str(tmp_path / f"file-{i}")
            fd = os.open(name, os.O_WRONLY | os.O_CREAT)
            opened.append((fd, name))
            if fd == old_w:
                break
        reused = [name for fd, name in opened if fd == old_w]
        assert reused, "the old fd number was not handed out again; the check below would prove nothing"
        client._wake()  # a late caller (send_request racing close) must not write into that file
        assert os.path.getsize(reused[0]) == 0
    finally:
        for fd, _ in opened:
            os.close(fd)


def test_close_of_a_stuck_io_thread_reports_it_and_keeps_the_pipe_open(scheduler_factory, tmp_path):
    sched = scheduler_factory()
    entered, release = threading.Event(), threading.Event()

    def blocking_listener(event: dict) -> None:
        entered.set()
        release.wait(30)

    client = SchedulerClient(sched.control_endpoint, make_config(tmp_path), on_event=blocking_listener)
    try:
        client.send_request(p.SUBMIT, {"task": {"kind": "inpaint", "name": "cv2", "form": {}}})
        wait_for(entered.is_set, 10, "the I/O thread to block in the event listener")
        assert client.close(timeout=0.2) is False  # the socket is still open: the caller must know
        assert client._thread.is_alive()
        assert _fd_open(client._wake_r) and _fd_open(client._wake_w)  # still polled by that thread
    finally:
        release.set()
    assert client.close(timeout=10) is True
    assert client._wake_r == client._wake_w == -1
