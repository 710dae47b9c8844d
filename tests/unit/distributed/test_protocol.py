"""protocol.py: round trips, and every kind of malformed input is a ProtocolError (never a crash)."""

from __future__ import annotations

import json
import os
import random

import pytest

from lama_cleaner.plugins.distributed.wire import protocol as p


def test_round_trip_with_named_blobs():
    frames = p.encode_named(p.SUBMIT, {"req_id": "1", "task": {"kind": "inpaint"}}, {"image": b"\x00img", "mask": b"m"})
    assert frames[0] == b"LC1" and frames[1] == b"SUBMIT"
    msg = p.decode(frames, receiver="scheduler")
    assert msg.command == p.SUBMIT
    assert msg.header["req_id"] == "1"
    assert msg.blob_map() == {"image": b"\x00img", "mask": b"m"}
    assert p.decode(msg.frames()) == msg


def test_encode_refuses_unnamed_blobs_and_unknown_commands():
    with pytest.raises(p.ProtocolError):
        p.encode(p.RESULT, {"node_id": "n"}, [b"body"])
    with pytest.raises(p.ProtocolError) as err:
        p.encode("NOPE", {})
    assert err.value.code == p.ERR_UNKNOWN_COMMAND
    with pytest.raises(p.ProtocolError):
        p.encode(p.PING, {"x": object()})


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([], p.ERR_MALFORMED),
        ([b"LC1", b"PING"], p.ERR_MALFORMED),
        ([b"XX1", b"PING", b"{}"], p.ERR_MALFORMED),
        ([b"LC2", b"PING", b"{}"], p.ERR_VERSION),
        ([b"LC1", b"BOGUS", b"{}"], p.ERR_UNKNOWN_COMMAND),
        ([b"LC1", b"\xff", b"{}"], p.ERR_UNKNOWN_COMMAND),
        ([b"LC1", b"PING", b"{nope"], p.ERR_MALFORMED),
        ([b"LC1", b"PING", b"\xff\xfe"], p.ERR_MALFORMED),
        ([b"LC1", b"PING", b"[1, 2]"], p.ERR_MALFORMED),
        ([b"LC1", b"PING", b"{}", b"stray blob"], p.ERR_MALFORMED),
        ([b"LC1", b"PING", json.dumps({"blobs": ["a", "b"]}).encode(), b"only one"], p.ERR_MALFORMED),
        ([b"LC1", b"PING", json.dumps({"blobs": ["a", "a"]}).encode(), b"1", b"2"], p.ERR_MALFORMED),
        ([b"LC1", b"PING", json.dumps({"blobs": "a"}).encode(), b"1"], p.ERR_MALFORMED),
    ],
)
def test_envelope_errors(frames, code):
    with pytest.raises(p.ProtocolError) as err:
        p.decode(frames)
    assert err.value.code == code


def test_receiver_schemas_check_direction_and_fields():
    ok = p.encode(p.HEARTBEAT, {"node_id": "n", "state": "idle"})
    p.decode(ok, receiver="scheduler")
    p.decode(p.encode(p.HEARTBEAT, {}), receiver="node")
    with pytest.raises(p.ProtocolError, match="lacks field 'node_id'"):
        p.decode(p.encode(p.HEARTBEAT, {}), receiver="scheduler")
    with pytest.raises(p.ProtocolError, match="wrong type"):
        p.decode(p.encode(p.READY, {"node_id": 5}), receiver="scheduler")
    with pytest.raises(p.ProtocolError, match="wrong type"):  # bool is not an int here
        p.decode(p.encode(p.CANCEL, {"task_id": "t", "attempt": True}), receiver="node")
    with pytest.raises(p.ProtocolError) as err:
        p.decode(p.encode(p.WELCOME, {}), receiver="scheduler")
    assert err.value.code == p.ERR_UNKNOWN_COMMAND
    with pytest.raises(ValueError):
        p.decode(ok, receiver="martian")


def test_random_garbage_never_escapes_as_another_exception():
    rng = random.Random(1234)
    for _ in range(500):
        n = rng.randint(0, 6)
        frames = [os.urandom(rng.randint(0, 40)) for _ in range(n)]
        if n >= 3 and rng.random() < 0.5:
            frames[0] = b"LC1"
            frames[1] = rng.choice(sorted(p.COMMANDS)).encode()
        for receiver in (None, "scheduler", "node", "producer"):
            try:
                p.decode(frames, receiver=receiver)
            except p.ProtocolError:
                pass


def test_split_identity_tolerates_req_delimiter():
    assert p.split_identity([b"id", b"LC1"]) == (b"id", [b"LC1"])
    assert p.split_identity([b"id", b"", b"LC1"]) == (b"id", [b"LC1"])
    with pytest.raises(p.ProtocolError):
        p.split_identity([])


def test_queue_endpoints_follow_control_port():
    assert p.queue_endpoints("tcp://127.0.0.1:5570", ["gpu", "cpu"]) == {
        "gpu": "tcp://127.0.0.1:5571",
        "cpu": "tcp://127.0.0.1:5572",
    }
    assert p.queue_endpoints("tcp://127.0.0.1:0", ["gpu"]) == {"gpu": "tcp://127.0.0.1:0"}
    with pytest.raises(ValueError):
        p.queue_endpoints("ipc:///tmp/x", ["gpu"])
    with pytest.raises(ValueError):
        p.queue_endpoints("tcp://127.0.0.1:port", ["gpu"])


def test_done_is_validated_for_the_producer():
    done = p.encode_named(p.DONE, {"task_id": "t", "status": "completed", "mimetype": "image/png",
                                   "headers": {"X-Seed": "1"}}, {"body": b"png"})  # fmt: skip
    msg = p.decode(done, receiver="producer")
    assert msg.command == p.DONE and msg.blob_map() == {"body": b"png"}
    failed = p.encode(p.DONE, {"task_id": "t", "status": "failed", "error": "boom", "error_status": 400})
    assert p.decode(failed, receiver="producer").header["error_status"] == 400
    p.decode(p.encode(p.DONE, {"task_id": "t", "status": "cancelled", "error": None}), receiver="producer")
    bad = [
        p.encode(p.DONE, {"task_id": "t", "status": "completed", "mimetype": "image/png", "headers": {}}),  # no body
        p.encode_named(p.DONE, {"task_id": "t", "status": "completed", "headers": {}}, {"body": b"x"}),
        p.encode_named(p.DONE, {"task_id": "t", "status": "completed", "mimetype": "a", "headers": {}}, {"img": b"x"}),
        p.encode_named(p.DONE, {"task_id": "t", "status": "failed", "error": "e"}, {"body": b"x"}),
        p.encode(p.DONE, {"task_id": "t", "status": "processing"}),
        p.encode(p.DONE, {"task_id": "t", "status": "failed", "error_status": "400"}),
        p.encode(p.DONE, {"status": "failed"}),
    ]
    for frames in bad:
        with pytest.raises(p.ProtocolError):
            p.decode(frames, receiver="producer")
    with pytest.raises(p.ProtocolError) as err:  # only producers receive DONE
        p.decode(failed, receiver="scheduler")
    assert err.value.code == p.ERR_UNKNOWN_COMMAND


def test_optional_fields_are_type_checked_when_present():
    caps = {"models": []}
    p.decode(p.encode(p.HELLO, {"node_id": "n", "capabilities": caps}), receiver="scheduler")
    p.decode(p.encode(p.HELLO, {"node_id": "n", "capabilities": caps, "task_id": None, "attempt": None}),
             receiver="scheduler")  # fmt: skip
    p.decode(p.encode(p.HELLO, {"node_id": "n", "capabilities": caps, "task_id": "t", "attempt": 2}),
             receiver="scheduler")  # fmt: skip
    p.decode(p.encode(p.SUBMIT, {"req_id": 1, "task": {}, "want_result": True}), receiver="scheduler")
    p.decode(p.encode(p.CANCELLED, {"node_id": "n", "task_id": "t", "attempt": 1, "ready": False}),
             receiver="scheduler")  # fmt: skip
    bad = [
        (p.HELLO, {"node_id": "n", "capabilities": caps, "task_id": 7, "attempt": 1}),
        (p.HELLO, {"node_id": "n", "capabilities": caps, "task_id": "t", "attempt": "1"}),
        (p.HELLO, {"node_id": "n", "capabilities": caps, "task_id": "t", "attempt": True}),
        (p.SUBMIT, {"req_id": 1, "task": {}, "want_result": "yes"}),
        (p.RESULT, {"node_id": "n", "task_id": "t", "attempt": 1, "mimetype": "m", "headers": {}, "ready": 0}),
        (p.FAILED, {"node_id": "n", "task_id": "t", "attempt": 1, "error": "e", "retryable": True, "ready": None}),
        (p.CANCELLED, {"node_id": "n", "task_id": "t", "attempt": 1, "ready": "no"}),
    ]
    for command, header in bad:
        with pytest.raises(p.ProtocolError, match="wrong type"):
            p.decode(p.encode(command, header), receiver="scheduler")
