"""``send_nowait`` sends whole messages or nothing, like ``send_multipart(frames, zmq.NOBLOCK)``."""

from __future__ import annotations

import pytest
import zmq

from lama_cleaner.plugins.distributed.wire.send import send_nowait


def test_whole_message_arrives_and_an_unknown_identity_sends_nothing() -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.setsockopt(zmq.IDENTITY, b"peer")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        send_nowait(dealer, [b"LC1", b"PING", b"{}"])
        assert router.poll(5000), "nothing arrived"
        assert router.recv_multipart() == [b"peer", b"LC1", b"PING", b"{}"]
        with pytest.raises(zmq.ZMQError) as info:
            send_nowait(router, [b"nobody", b"LC1", b"PONG", b"{}"])
        assert info.value.errno == zmq.EHOSTUNREACH
        send_nowait(router, [b"peer", b"LC1", b"PONG", b"{}"])  # the failed one left no half message
        assert dealer.poll(5000)
        assert dealer.recv_multipart() == [b"LC1", b"PONG", b"{}"]
        assert not dealer.poll(50)
    finally:
        dealer.close(0)
        router.close(0)
        ctx.term()
