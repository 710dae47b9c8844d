"""``SchedulerClient`` and ``DistributedExecutor`` against a real in-process scheduler (real sockets,
real SQLite): thread safety, clear errors when the scheduler is away, reconnect after a restart."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from lama_cleaner.errors import ClientError, NotFound, Overloaded, TaskCancelled, TaskFailed
from lama_cleaner.plugins.config_loader import load_config
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient, SchedulerUnavailable
from lama_cleaner.plugins.distributed.producer.translate import error_from_reply
from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from lama_cleaner.plugins.distributed.wire import protocol as p

from .conftest import FAST, free_port_block, mask_png, png, start_node, task_form, wait_for


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


# ---------------------------------------------------------------------- result push (DONE)
class _Events:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


def _with_node(tmp_path: Path, procs, tmp_config):
    config = _config(tmp_path)
    scheduler = _scheduler(config)
    start_node(procs, config.distributed.scheduler_bind, tmp_config)
    return config, scheduler


def _wait_node(client: SchedulerClient) -> None:
    def online() -> bool:
        nodes = client.request(p.NODES, {}).header.get("nodes") or []
        return any(n.get("state") == "idle" for n in nodes)

    wait_for(online, 60, "a node online")


def test_want_result_pushes_the_body_and_release_forgets_it(tmp_path: Path, procs, tmp_config):
    config, scheduler = _with_node(tmp_path, procs, tmp_config)
    client = SchedulerClient(config.distributed.scheduler_bind, config)
    try:
        _wait_node(client)
        done = threading.Event()
        header = {
            "task": {
                "kind": "inpaint",
                "name": "sleep",
                "form": task_form("0"),
                "submitter": None,
                "idempotency_key": None,
            },
            "blobs": ["image", "mask"],
            "want_result": True,
        }
        accepted = client.request(p.SUBMIT, header, [png(), mask_png()], done_event=done)
        task_id = accepted.header["task"]["id"]
        assert client.has_result_slot(task_id)
        assert done.wait(30), "no DONE pushed"
        pushed = client.result(task_id)
        assert pushed is not None and pushed.command == p.DONE and pushed.header["status"] == "completed"
        fetched = client.request(p.FETCH, {"task_id": task_id})
        assert pushed.blob_map()["body"] == fetched.blob_map()["body"]  # the same bytes FETCH returns
        assert pushed.header["mimetype"] == fetched.header["mimetype"] == "image/png"
        client.release_result(task_id)
        assert client.result(task_id) is None and not client.has_result_slot(task_id)
        # A SUBMIT without want_result opens no slot: nothing is kept for it.
        plain = _submit(client).header["task"]["id"]
        assert not client.has_result_slot(plain)
    finally:
        client.close()
        scheduler.close()


def _executor(config):
    from lama_cleaner.plugins.distributed.producer.executor import DistributedExecutor
    from lama_cleaner.plugins.manager import create_plugin_manager

    config.distributed.scheduler = config.distributed.scheduler_bind  # use the test's scheduler
    config.distributed.request_timeout_s = 30
    pm = create_plugin_manager(["tests.support.fake_models"])
    executor = DistributedExecutor(config, _Events(), pm, start_local_nodes=False)
    sent: list[str] = []
    assert executor.client is not None
    original = executor.client.request

    def recording(command, header=None, blobs=None, **kw):
        sent.append(command)
        return original(command, header, blobs, **kw)

    executor.client.request = recording  # type: ignore[method-assign]
    return executor, sent


def _inpaint_request(prompt: str = "0", image: bytes | None = None):
    from lama_cleaner.tasks import TaskRequest

    return TaskRequest(
        kind="inpaint", name="sleep", form=task_form(prompt), files={"image": image or png(), "mask": mask_png()}
    )


def test_classic_run_gets_its_body_from_done_without_fetch(tmp_path: Path, procs, tmp_config):
    config, scheduler = _with_node(tmp_path, procs, tmp_config)
    executor, sent = _executor(config)
    try:
        assert executor.client is not None
        _wait_node(executor.client)
        sent.clear()
        out = executor.run(_inpaint_request())
        assert out.mimetype == "image/png" and out.body
        assert sent == [p.SUBMIT]  # no FETCH (and no GET): the body came with the DONE
        assert not executor.client._results  # the slot was released
        # A task that fails on the node raises from its DONE just like FETCH would have.
        # (a PNG whose header passes the web side's check but whose data is cut off fails on the node)
        cut = png(seed=11)
        with pytest.raises(TaskFailed) as info:
            executor.run(_inpaint_request(image=cut[: len(cut) // 2]))
        assert info.value.status == 400 and "cannot decode" in info.value.message
        assert p.FETCH not in sent
    finally:
        executor.close()
        scheduler.close()


def test_classic_run_neither_validates_again_nor_changes_the_callers_request(
    tmp_path: Path, procs, tmp_config, monkeypatch
):
    """The route already ran ``validate_task`` (``InpaintExecutor.run``'s contract), so ``run`` does not
    decode the image headers a second time; a nameless inpaint request runs on the current model
    without the caller's object being changed."""
    from lama_cleaner import pipeline

    def second_validation(*args, **kwargs):
        raise AssertionError("DistributedExecutor.run validated a request its caller had validated")

    config, scheduler = _with_node(tmp_path, procs, tmp_config)
    executor, _ = _executor(config)
    monkeypatch.setattr(pipeline, "validate_task", second_validation)
    try:
        assert executor.client is not None
        _wait_node(executor.client)
        executor.switch_model("sleep")
        request = _inpaint_request()
        request.name = ""
        out = executor.run(request)
        assert out.mimetype == "image/png" and out.body
        assert request.name == ""
        tasks, total = executor.list()
        assert total == 1 and tasks[0].name == "sleep"
    finally:
        executor.close()
        scheduler.close()


def test_classic_run_falls_back_to_fetch_without_a_done(tmp_path: Path, procs, tmp_config):
    """A DONE can be lost (the client reconnected since the SUBMIT): the terminal EVENT still wakes
    the request, which then FETCHes the result."""
    config, scheduler = _with_node(tmp_path, procs, tmp_config)
    executor, sent = _executor(config)
    try:
        assert executor.client is not None
        _wait_node(executor.client)
        executor.client._on_done = lambda msg: None  # type: ignore[method-assign]  # every DONE lost
        sent.clear()
        out = executor.run(_inpaint_request())
        assert out.mimetype == "image/png" and out.body
        assert sent == [p.SUBMIT, p.FETCH]
    finally:
        executor.close()
        scheduler.close()


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    """Run ``fn`` on a thread; its return value or exception lands in the returned dict."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_classic_run_gets_its_result_across_a_scheduler_restart(tmp_path: Path, procs, tmp_config):
    """The DONE promised by a scheduler that restarted is lost with it: the client's reconnect wakes
    the waiting request, which finds the task's end (GET) and FETCHes the bytes from the new one."""
    config, scheduler = _with_node(tmp_path, procs, tmp_config)
    executor, sent = _executor(config)
    try:
        assert executor.client is not None
        _wait_node(executor.client)
        thread, box = _in_thread(lambda: executor.run(_inpaint_request("1500")))
        wait_for(lambda: [t.status for t in executor.list()[0]] == ["processing"], 30, "the task to start")
        scheduler.close()
        scheduler = _scheduler(config)  # same port, same journal: the node reattaches its running task
        thread.join(60)
        assert not thread.is_alive() and "error" not in box, box
        out = box["value"]
        (task,), _ = executor.list()
        assert task.status == "completed" and out.body == executor.result(task.id).body
        assert sent.count(p.SUBMIT) == 1 and p.FETCH in sent
    finally:
        executor.close()
        scheduler.close()


def test_closing_the_executor_fails_a_waiting_classic_run_at_once(tmp_path: Path):
    """Nothing will answer a request once its client is closed: it gets a 503 now, not a 504 at its
    timeout (30 s here)."""
    config = _config(tmp_path)
    config.distributed.unschedulable_timeout_s = 0
    scheduler = _scheduler(config)  # no node: the task stays queued
    executor, _ = _executor(config)
    try:
        thread, box = _in_thread(lambda: executor.run(_inpaint_request()))
        wait_for(lambda: executor.list()[1] == 1, 10, "the task to be queued")
        started = time.monotonic()
        executor.close()
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - started < 5
        assert isinstance(box.get("error"), Overloaded) and box["error"].status == 503, box
    finally:
        executor.close()
        scheduler.close()


def test_many_threads_many_requests_none_lost(tmp_path: Path):
    """Requests from many threads share wake-ups of the I/O thread; none may be left waiting."""
    config = _config(tmp_path)
    scheduler = _scheduler(config)
    client = SchedulerClient(config.distributed.scheduler_bind, config, request_timeout_s=10)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(150):
                assert client.request(p.QUEUES, {}).command == p.STATS
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert not any(t.is_alive() for t in threads)
    finally:
        client.close()
        scheduler.close()


def test_embedded_executor_talks_to_its_scheduler_in_process_and_nodes_over_tcp(tmp_path: Path, procs, tmp_config):
    """An embedded scheduler serves its own web process through ``inproc://`` (no TCP hop) while
    nodes and other producers keep using its TCP endpoint; closing stops both without hanging."""
    from lama_cleaner.plugins.distributed.producer.executor import DistributedExecutor
    from lama_cleaner.plugins.manager import create_plugin_manager

    config = _config(tmp_path)
    config.distributed.request_timeout_s = 30
    executor = DistributedExecutor(
        config, _Events(), create_plugin_manager(["tests.support.fake_models"]), start_local_nodes=False
    )
    closed = False
    try:
        assert executor.scheduler is not None and executor.client is not None
        assert executor.client.endpoint.startswith("inproc://")
        assert executor.endpoint.startswith("tcp://127.0.0.1:")
        start_node(procs, executor.endpoint, tmp_config)
        _wait_node(executor.client)
        out = executor.run(_inpaint_request())
        assert out.mimetype == "image/png" and out.body
        # Another producer (a second web server) still reaches the same scheduler over TCP.
        outside = SchedulerClient(executor.endpoint, config)
        try:
            nodes = outside.request(p.NODES, {}).header["nodes"]
            assert [n["state"] for n in nodes] == ["idle"]
        finally:
            outside.close()
        scheduler = executor.scheduler
        started = time.monotonic()
        executor.close()
        closed = True
        assert time.monotonic() - started < 10 and not scheduler.running
    finally:
        if not closed:
            executor.close()


def test_executor_tunes_malloc_for_its_own_process_only(tmp_path: Path, monkeypatch):
    """Every image crosses the web process several times in distributed mode, so the executor applies
    the malloc thresholds there (malloc_tuning); it hands them to no other process through
    ``os.environ`` (its nodes tune themselves), and an operator's ``LAMA_CLEANER_MALLOC_TUNING=0`` holds."""
    from lama_cleaner.plugins.distributed import malloc_tuning
    from lama_cleaner.plugins.distributed.producer import executor as executor_module
    from lama_cleaner.plugins.manager import create_plugin_manager

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(malloc_tuning, "_glibc_mallopt", lambda: lambda param, value: calls.append((param, value)))
    for name, _param, _value in malloc_tuning.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(malloc_tuning.DISABLE_ENV, raising=False)
    before = dict(os.environ)
    pm = create_plugin_manager(["tests.support.fake_models"])
    for disabled in (False, True):
        if disabled:
            monkeypatch.setenv(malloc_tuning.DISABLE_ENV, "0")
        config = _config(tmp_path / str(disabled))
        executor = executor_module.DistributedExecutor(config, _Events(), pm, start_local_nodes=False)
        executor.close()
        expected = [] if disabled else [(param, value) for _name, param, value in malloc_tuning.SETTINGS]
        assert calls == expected
        calls.clear()
    monkeypatch.delenv(malloc_tuning.DISABLE_ENV)
    assert dict(os.environ) == before


def test_send_request_queues_a_burst_and_every_reply_and_result_arrives(tmp_path: Path, procs, tmp_config):
    """A batch caller queues many SUBMITs before waiting for any (``send_request``); each gets its
    own ACCEPTED and DONE, and an unanswerable request still fails by its own deadline."""
    config, scheduler = _with_node(tmp_path, procs, tmp_config)
    client = SchedulerClient(config.distributed.scheduler_bind, config)
    try:
        _wait_node(client)
        header = {
            "task": {
                "kind": "inpaint",
                "name": "sleep",
                "form": task_form("0"),
                "submitter": None,
                "idempotency_key": None,
            },
            "blobs": ["image", "mask"],
            "want_result": True,
        }
        pendings = [client.send_request(p.SUBMIT, header, [png(seed=i), mask_png()], timeout=30) for i in range(40)]
        task_ids = []
        for pending in pendings:
            reply = client.wait_reply(pending)
            assert reply.command == p.ACCEPTED
            task_ids.append(reply.header["task"]["id"])
        assert len(set(task_ids)) == 40
        for pending, task_id in zip(pendings, task_ids, strict=True):
            assert pending.done_event is not None and pending.done_event.wait(60), f"no DONE for {task_id}"
            done = client.result(task_id)
            assert done is not None and done.header["status"] == "completed" and done.blobs
            client.release_result(task_id)
    finally:
        client.close()
        scheduler.close()
    # The scheduler is gone: a queued request fails when its own deadline passes.
    lonely = SchedulerClient(config.distributed.scheduler_bind, config)
    try:
        pending = lonely.send_request(p.QUEUES, {}, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SchedulerUnavailable):
            lonely.wait_reply(pending)
        assert time.monotonic() - started < 3
    finally:
        lonely.close()


def test_a_burst_beyond_the_sockets_high_water_mark_is_queued_not_dropped(tmp_path: Path):
    """Requests beyond what the DEALER buffers (here: the scheduler is not up yet, so its 1000-message
    pipe fills) wait in the client, in order, and go out as soon as the scheduler is reachable, not
    a liveness window later (the re-send path of a request lost to a restart)."""
    import zmq

    config = _config(tmp_path)
    config.distributed.heartbeat_interval_s = 5.0  # re-send window 15 s: far beyond this test's deadline
    port = free_port_block(1)
    client = SchedulerClient(f"tcp://127.0.0.1:{port}", config, request_timeout_s=60)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    try:
        pendings = [client.send_request(p.QUEUES, {}) for _ in range(3000)]
        wait_for(lambda: len(client._unsent) >= 1000, 30, "the socket refusing part of the burst")
        router.bind(f"tcp://127.0.0.1:{port}")
        started = time.monotonic()
        seen: list[str] = []
        while len(seen) < len(pendings):
            assert time.monotonic() - started < 10, f"only {len(seen)} of {len(pendings)} requests arrived"
            if not router.poll(1000):
                continue
            frames = router.recv_multipart()
            msg = p.decode(frames[1:], receiver="scheduler")
            if msg.command == p.QUEUES:
                seen.append(msg.header["req_id"])
                router.send_multipart([frames[0], *p.encode(p.STATS, {"req_id": msg.header["req_id"], "queues": []})])
        assert seen == [pending.req_id for pending in pendings]  # in the order they were made
        for pending in pendings:
            assert client.wait_reply(pending).command == p.STATS
        assert time.monotonic() - started < 10 and not client._unsent
    finally:
        client.close()
        router.close(0)
        ctx.term()
