"""Property tests of the wire format's validation: whatever arrives, ``protocol.decode`` returns a
message or raises ``ProtocolError`` (nothing else reaches the scheduler's handlers), and a req_id the
scheduler echoes in a REJECTED can always be encoded (the fuzz test found one that could not)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lama_cleaner.plugins.distributed.scheduler.producer_handlers import peek_req_id
from lama_cleaner.plugins.distributed.wire import protocol as p

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
commands = st.sampled_from(sorted(p.COMMANDS)).map(str.encode) | st.binary(max_size=8)
signatures = st.sampled_from([p.SIGNATURE, b"LC2", b"LC0", b"LC", b"XX1"]) | st.binary(max_size=4)
headers = st.dictionaries(
    st.sampled_from(["node_id", "task_id", "attempt", "req_id", "blobs", "capabilities", "task", "state"])
    | st.text(max_size=6),
    json_values,
    max_size=6,
).map(lambda h: json.dumps(h).encode()) | st.binary(max_size=40)
messages = st.tuples(signatures, commands, headers, st.lists(st.binary(max_size=16), max_size=3)).map(
    lambda t: [t[0], t[1], t[2], *t[3]]
)


@settings(max_examples=2000, deadline=None)
@given(frames=messages | st.lists(st.binary(max_size=24), max_size=6), receiver=st.sampled_from(p.RECEIVERS))
def test_decode_either_returns_a_message_or_raises_protocol_error(frames, receiver):
    try:
        msg = p.decode(frames, receiver=receiver)
    except p.ProtocolError:
        return
    assert msg.command in p.COMMANDS and isinstance(msg.header, dict)
    assert msg.frames()  # what was accepted can be sent on again


@settings(max_examples=1000, deadline=None)
@given(frames=messages)
def test_a_peeked_req_id_can_always_be_answered(frames):
    req_id = peek_req_id(frames)
    if req_id is not None:
        p.encode(p.REJECTED, {"req_id": req_id, "status": 400, "code": "malformed", "message": "x"})
