"""``producer/translate.py``: a TaskRequest becomes the SUBMIT the scheduler reads, and each reply
becomes the value or the exception (status, code, Retry-After) the HTTP edge answers with."""

from __future__ import annotations

import pytest

from lama_cleaner.errors import (
    ClientError,
    LamaCleanerError,
    NotFound,
    Overloaded,
    TaskCancelled,
    TaskFailed,
)
from lama_cleaner.plugins.distributed.producer import translate as t
from lama_cleaner.plugins.distributed.producer.client import SchedulerError
from lama_cleaner.plugins.distributed.wire import protocol as p
from lama_cleaner.tasks import TaskRequest


def _request(**overrides) -> TaskRequest:
    fields = {
        "kind": "inpaint",
        "name": "cv2",
        "form": {"sdSeed": "42"},
        "files": {"image": b"IMG", "mask": b"MASK"},
        "submitter": "sid-1",
        "priority": 7,
    }
    fields.update(overrides)
    return TaskRequest(**fields)


# ---------------------------------------------------------------------- outgoing
def test_submit_message_names_each_blob_in_order_and_carries_the_task():
    request = _request(idempotency_key="key-1")
    header, blobs = t.submit_message(request)
    assert header == {
        "task": {
            "kind": "inpaint",
            "name": "cv2",
            "form": {"sdSeed": "42"},
            "submitter": "sid-1",
            "idempotency_key": "key-1",
            "priority": 7,
        },
        "blobs": ["image", "mask"],
    }
    assert blobs == [b"IMG", b"MASK"]
    header["task"]["form"]["x"] = "1"
    assert request.form == {"sdSeed": "42"}  # the header owns a copy
    # What the client sends is a valid SUBMIT for the scheduler.
    msg = p.decode(p.encode(p.SUBMIT, {**header, "req_id": "r1"}, blobs), receiver="scheduler")
    assert msg.blob_map() == {"image": b"IMG", "mask": b"MASK"}


def test_submit_message_makes_up_a_fresh_idempotency_key_when_the_caller_has_none():
    first, _ = t.submit_message(_request())
    second, _ = t.submit_message(_request())
    keys = [first["task"]["idempotency_key"], second["task"]["idempotency_key"]]
    assert all(k.startswith("auto-") for k in keys) and keys[0] != keys[1]


# ---------------------------------------------------------------------- incoming values
def test_task_info_and_task_event_ignore_fields_this_version_does_not_know():
    info = t.task_info({"id": "t1", "kind": "inpaint", "name": "cv2", "status": "queued", "from_the_future": 1})
    assert (info.id, info.status) == ("t1", "queued")
    event = t.task_event({"task_id": "t1", "status": "completed", "progress": 1.0, "from_the_future": 1})
    assert (event.task_id, event.status, event.progress) == ("t1", "completed", 1.0)
    with pytest.raises(TypeError):
        t.task_event({"status": "completed"})  # task_id is required: the caller logs and drops it


def test_task_output_takes_the_named_body_and_stringifies_the_reply_headers():
    msg = p.Message(p.OUTPUT, {"mimetype": "image/png", "headers": {"X-Seed": 42}, "blobs": ["body"]}, [b"PNG"])
    out = t.task_output(msg)
    assert (out.body, out.mimetype, out.headers) == (b"PNG", "image/png", {"X-Seed": "42"})
    unnamed = p.Message(p.OUTPUT, {"mimetype": "image/jpeg"}, [])
    assert t.task_output(unnamed).body == b"" and t.task_output(unnamed).headers == {}


def test_node_counts_counts_every_state_and_keeps_unknown_ones():
    counts = t.node_counts([{"state": "idle"}, {"state": "idle"}, {"state": "busy"}, {"state": "joining"}])
    assert counts == {"idle": 2, "busy": 1, "draining": 0, "offline": 0, "joining": 1}


# ---------------------------------------------------------------------- incoming errors
def test_a_scheduler_error_is_a_502_that_says_why():
    version = t.error_from_scheduler_error(SchedulerError(p.ERR_VERSION, "protocol version 2 is not supported"))
    assert (version.status, version.code) == (502, "scheduler_version_mismatch")
    assert version.message.endswith("(protocol version mismatch): protocol version 2 is not supported")
    other = t.error_from_scheduler_error(SchedulerError("weird", "no"))
    assert (other.status, other.code, other.message) == (
        502,
        "scheduler_error",
        "The scheduler refused the request (weird): no",
    )


@pytest.mark.parametrize(
    ("header", "kind", "status", "code"),
    [
        ({"status": 503, "code": "overloaded", "message": "full", "retry_after": 9}, Overloaded, 503, "overloaded"),
        ({"status": 503, "message": "full"}, Overloaded, 503, "overloaded"),
        ({"status": 409, "code": "cancelled", "message": "Task was cancelled"}, TaskCancelled, 409, "cancelled"),
        ({"status": 500, "code": "task_failed", "message": "boom"}, TaskFailed, 500, "task_failed"),
        ({"status": 500, "code": "task_failed", "message": "x", "error_status": 400}, TaskFailed, 400, "task_failed"),
        ({"status": 500, "code": "task_failed", "message": "x", "error_status": 503}, TaskFailed, 503, "task_failed"),
        ({"status": 404, "code": "not_found", "message": "no such task"}, NotFound, 404, "not_found"),
        ({"status": 410, "code": "expired", "message": "gone"}, ClientError, 410, "expired"),
        ({"status": 409, "code": "not_finished", "message": "wait"}, ClientError, 409, "not_finished"),
        ({"status": 502, "code": "", "message": "odd"}, LamaCleanerError, 502, "internal_error"),
    ],
)
def test_rejections_keep_their_status_code_and_message(header, kind, status, code):
    err = t.error_from_reply(header, retry_after_default=4)
    assert type(err) is kind and (err.status, err.code, err.message) == (status, code, header["message"])
    if isinstance(err, Overloaded):
        assert err.retry_after == header.get("retry_after", 4)


def test_failure_status_keeps_only_client_errors_and_unschedulable():
    assert [t.failure_status(s) for s in (400, 422, 499, 503, 500, 502, 200, None, "400", True)] == [
        400,
        422,
        499,
        503,
        500,
        500,
        500,
        500,
        500,
        500,
    ]


def test_output_from_done_is_the_body_or_the_error_fetch_would_raise():
    done = p.Message(
        p.DONE, {"task_id": "t1", "status": "completed", "mimetype": "image/png", "blobs": ["body"]}, [b"B"]
    )
    assert t.output_from_done(done).body == b"B"
    with pytest.raises(TaskCancelled):
        t.output_from_done(p.Message(p.DONE, {"task_id": "t1", "status": "cancelled"}))
    failed = {"task_id": "t1", "status": "failed", "error": "bad mask", "error_status": 400, "traceback": "tb"}
    with pytest.raises(TaskFailed) as info:
        t.output_from_done(p.Message(p.DONE, failed))
    assert (info.value.status, info.value.message, info.value.traceback) == (400, "bad mask", "tb")
    with pytest.raises(TaskFailed) as info:
        t.output_from_done(p.Message(p.DONE, {"task_id": "t1", "status": "failed", "error": None}))
    assert (info.value.status, info.value.message) == (500, "task failed")
