"""protocol.py: EVENTS (all events of a scheduler round in one message) and WATCH ``batch_events``."""

from __future__ import annotations

import json

import pytest

from lama_cleaner.plugins.distributed.wire import protocol as p


def _event(task_id: str, status: str = "queued", **extra) -> dict:
    return {"task_id": task_id, "status": status, "kind": "inpaint", "name": "cv2", "queue": "cpu",
            "node": None, "progress": 0.0, "step": None, "error": None, "submitter": None, "attempts": 0,
            "at": 1.5, **extra}  # fmt: skip


def test_events_round_trip_keeps_every_event_in_order():
    events = [_event("a"), _event("a", "processing", node="n1"), _event("b"), _event("a", "completed")]
    msg = p.decode(p.encode(p.EVENTS, {"events": events}), receiver="producer")
    assert msg.command == p.EVENTS
    assert msg.header["events"] == events
    assert msg.blobs == []


def test_an_empty_events_list_is_valid():
    assert p.decode(p.encode(p.EVENTS, {"events": []}), receiver="producer").header["events"] == []


@pytest.mark.parametrize(
    "header",
    [
        {},
        {"events": None},
        {"events": {"task_id": "a", "status": "queued"}},
        {"events": "a"},
        {"events": [_event("a"), "b"]},
        {"events": [_event("a"), None]},
        {"events": [_event("a"), [1, 2]]},
        {"events": [{"status": "queued"}]},
        {"events": [{"task_id": "a"}]},
        {"events": [_event("a"), {"task_id": 7, "status": "queued"}]},
        {"events": [{"task_id": "a", "status": True}]},
        {"events": [{"task_id": "a", "status": None}]},
    ],
)
def test_malformed_events_are_refused_as_a_whole(header):
    frames = [p.SIGNATURE, p.EVENTS.encode(), json.dumps(header).encode()]
    with pytest.raises(p.ProtocolError) as err:
        p.decode(frames, receiver="producer")
    assert err.value.code == p.ERR_MALFORMED


def test_events_names_the_bad_item():
    with pytest.raises(p.ProtocolError, match="item 1"):
        p.decode(p.encode(p.EVENTS, {"events": [_event("a"), {"task_id": "b"}]}), receiver="producer")


def test_only_producers_receive_events():
    frames = p.encode(p.EVENTS, {"events": [_event("a"), _event("b")]})
    for receiver in ("scheduler", "node"):
        with pytest.raises(p.ProtocolError) as err:
            p.decode(frames, receiver=receiver)
        assert err.value.code == p.ERR_UNKNOWN_COMMAND
    assert p.decode(frames).command == p.EVENTS  # envelope-only decoding knows the command


def test_watch_batch_events_must_be_a_boolean():
    for value in (True, False):
        msg = p.decode(p.encode(p.WATCH, {"producer_id": "web", "batch_events": value}), receiver="scheduler")
        assert msg.header["batch_events"] is value
    p.decode(p.encode(p.WATCH, {"producer_id": "web"}), receiver="scheduler")  # absent: the old WATCH
    for value in ("yes", 1, None, []):
        with pytest.raises(p.ProtocolError) as err:
            p.decode(p.encode(p.WATCH, {"producer_id": "web", "batch_events": value}), receiver="scheduler")
        assert err.value.code == p.ERR_MALFORMED


def test_a_round_too_big_for_one_header_is_split_in_order(monkeypatch):
    """The scheduler never builds an EVENTS its receivers would refuse for size: it splits the
    round into consecutive batches (a lone event going as a plain EVENT), keeping the order."""
    from lama_cleaner.plugins.distributed.scheduler.event_publishing import _event_batches

    events = [_event(f"task-{i}") for i in range(5)]
    assert [f[1] for f in _event_batches(events)] == [b"EVENTS"]  # fits: one message
    one = len(p.encode(p.EVENT, events[0])[2])
    monkeypatch.setattr(p, "MAX_HEADER_BYTES", 2 * one + 40)  # about two events per header
    batches = [p.decode(frames, receiver="producer") for frames in _event_batches(events)]
    assert len(batches) > 1
    assert all(len(frames[2]) <= p.MAX_HEADER_BYTES for frames in _event_batches(events))
    flat = [e for m in batches for e in (m.header["events"] if m.command == p.EVENTS else [m.header])]
    assert flat == events
