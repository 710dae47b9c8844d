"""ERROR's optional ``req_id`` and the version-tolerant ERROR reader (``protocol.decode_error_any_version``)."""

from __future__ import annotations

import orjson
import pytest

from lama_cleaner.plugins.distributed.wire import protocol as p


def test_error_frames_carry_req_id_only_when_given():
    with_id = p.decode(p.error_frames(p.ERR_VERSION, "speak v1", "r-7"), receiver="producer")
    assert with_id.command == p.ERROR and with_id.header == {"code": "version", "message": "speak v1", "req_id": "r-7"}
    numeric = p.decode(p.error_frames(p.ERR_VERSION, "speak v1", 12), receiver="producer")
    assert numeric.header["req_id"] == 12
    without = p.decode(p.error_frames(p.ERR_VERSION, "speak v1"), receiver="producer")
    assert "req_id" not in without.header
    # a node reads the same ERROR (an extra field is allowed)
    assert p.decode(p.error_frames(p.ERR_VERSION, "x", "r-1"), receiver="node").header["code"] == "version"


def test_a_mistyped_error_req_id_is_refused():
    frames = [p.SIGNATURE, b"ERROR", orjson.dumps({"code": "version", "message": "m", "req_id": True})]
    with pytest.raises(p.ProtocolError, match="req_id"):
        p.decode(frames, receiver="producer")


@pytest.mark.parametrize("signature", [b"LC1", b"LC2", b"LC17"])
def test_error_of_any_version_is_readable(signature):
    header = {"code": "version", "message": "protocol version 1 is not supported", "req_id": "a-1", "extra": 1}
    msg = p.decode_error_any_version([signature, b"ERROR", orjson.dumps(header)])
    assert msg is not None and msg.command == p.ERROR and msg.header == header


@pytest.mark.parametrize(
    "frames",
    [
        [b"LC2", b"PONG", b"{}"],  # only ERROR is version-stable
        [b"XX2", b"ERROR", b'{"code": "version", "message": "m"}'],  # not our signature
        [b"LCx", b"ERROR", b'{"code": "version", "message": "m"}'],
        [b"LC2", b"ERROR", b"not json"],
        [b"LC2", b"ERROR", b"[1, 2]"],
        [b"LC2", b"ERROR", b'{"code": "version"}'],  # no message
        [b"LC2", b"ERROR", b'{"code": "version", "message": "m", "req_id": 1.5}'],
        [b"LC2", b"ERROR", b'{"code": "version", "message": "m"}', b"blob"],
        [b"LC2", b"ERROR"],
        [b"LC2", b"ERROR", b"\xff\xfe"],
    ],
)
def test_anything_else_is_not_taken_for_an_error(frames):
    assert p.decode_error_any_version(frames) is None
