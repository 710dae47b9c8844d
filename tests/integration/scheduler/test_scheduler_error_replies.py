"""ERROR replies reach the producer request they answer (a rolling upgrade with mixed protocol
versions): a real scheduler names the request's ``req_id``, and the web server's ``SchedulerClient``
fails that request at once with the scheduler's message instead of timing out 15 s later."""

from __future__ import annotations

import json
import time

import pytest

from lama_cleaner.plugins.distributed.producer import client as client_module
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient, SchedulerError
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.scheduler.peers import make_config


def test_wrong_version_request_gets_an_error_naming_its_req_id(scheduler_factory, peers):
    sched = scheduler_factory()
    peer = peers("producer", sched)
    peer.send_raw([b"LC2", b"GET", json.dumps({"req_id": "r-42", "task_id": "t"}).encode()])
    peer.send_raw([b"LC2", b"LIST", json.dumps({"req_id": 7}).encode()])
    refused = peer.expect(p.ERROR, lambda m: m.header.get("req_id") == "r-42")
    assert refused.header == {
        "code": "version",
        "message": "protocol version 2 is not supported (this peer speaks 1)",
        "req_id": "r-42",
    }
    assert peer.expect(p.ERROR, lambda m: m.header.get("req_id") == 7).header["code"] == "version"


def test_wrong_version_message_without_readable_req_id_gets_a_plain_error(scheduler_factory, peers):
    sched = scheduler_factory()
    peer = peers("producer", sched)
    peer.send_raw([b"LC2", b"WATCH", json.dumps({"producer_id": "p"}).encode()])
    peer.send_raw([b"LC3", b"GET", b"\x00 not json"])
    first = peer.expect(p.ERROR)
    second = peer.expect(p.ERROR)
    assert "req_id" not in first.header and "req_id" not in second.header
    assert {first.header["code"], second.header["code"]} == {"version"}


@pytest.fixture
def v2_client(scheduler_factory, tmp_path, monkeypatch):
    """A SchedulerClient whose requests (not its WATCH keepalive) go out as protocol version 2, the
    web server of a newer release talking to this scheduler mid-upgrade."""
    real_send = client_module.send_nowait

    def send_as_v2(sock, frames):
        if frames[1] != p.WATCH.encode():
            frames = [b"LC2", *frames[1:]]
        real_send(sock, frames)

    monkeypatch.setattr(client_module, "send_nowait", send_as_v2)
    sched = scheduler_factory()
    client = SchedulerClient(sched.control_endpoint, make_config(tmp_path / "client"), request_timeout_s=15.0)
    yield client
    assert client.close()


def test_client_request_fails_at_once_with_the_schedulers_message(v2_client):
    started = time.monotonic()
    with pytest.raises(SchedulerError) as info:
        v2_client.request(p.GET, {"task_id": "nope"})
    assert time.monotonic() - started < 5  # not the 15 s request timeout
    assert info.value.error_code == "version" and info.value.status == 502
    assert info.value.message == "protocol version 2 is not supported (this peer speaks 1)"
    # the client is still usable for the next request (same answer, again at once)
    with pytest.raises(SchedulerError):
        v2_client.request(p.NODES, {}, timeout=15.0)
    assert time.monotonic() - started < 10
