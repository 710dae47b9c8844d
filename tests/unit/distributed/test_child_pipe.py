"""``ChildPipe``: the node <-> inference child framing, over real ``multiprocessing`` Pipes.

Fields and byte strings arrive as sent, also when a message is larger than the socket buffers (the
reader must wait for the rest, not return part of it) and between two processes; a closed or dead
peer is an EOFError, never a hang or half a message; a Pipe that is not a socket (os.pipe, as on
Windows) still carries the same messages; the socket buffers are enlarged where the kernel allows.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import socket
import struct
import threading

import pytest

from lama_cleaner.plugins.distributed.node.child_pipe import BUFFER_BYTES, ChildPipe


@pytest.fixture
def pair():
    a, b = mp.Pipe()
    ends = ChildPipe(a), ChildPipe(b)
    yield ends
    for end in ends:
        end.close()


def test_fields_and_byte_strings_arrive_as_sent(pair):
    left, right = pair
    left.send(("task", {"task_id": "t1", "form": {"a": "1"}}, ["image", "mask"]), [b"\x89PNG-bytes", b""])
    fields, blobs = right.recv()
    assert fields == ("task", {"task_id": "t1", "form": {"a": "1"}}, ["image", "mask"])
    assert blobs == [b"\x89PNG-bytes", b""] and all(type(b) is bytes for b in blobs)
    right.send(("cancel", "t1"))
    assert left.recv() == (("cancel", "t1"), [])


def test_a_message_larger_than_the_buffers_arrives_whole(pair):
    left, right = pair
    big = os.urandom(3 * BUFFER_BYTES + 12_345)  # more than both buffers hold: sendall must wait for the reader
    memory = memoryview(bytearray(b"x" * 70_000))  # any bytes-like blob
    sender = threading.Thread(target=left.send, args=(("result", "t2", "image/png", {}, "cv2"), [big, memory]))
    sender.start()
    fields, (body, other) = right.recv()
    sender.join(timeout=30)
    assert fields == ("result", "t2", "image/png", {}, "cv2")
    assert body == big and other == b"x" * 70_000


def _echo(conn) -> None:
    pipe = ChildPipe(conn)
    while True:
        fields, blobs = pipe.recv()
        if fields[0] == "stop":
            break
        pipe.send(("echo", *fields[1:]), [b[::-1] for b in blobs])
    pipe.close()


def test_between_two_processes_and_eof_when_the_peer_exits():
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_echo, args=(theirs,), daemon=True)
    proc.start()
    theirs.close()
    pipe = ChildPipe(mine)
    try:
        image = os.urandom(2_500_000)
        pipe.send(("task", "t3"), [image, b"mask"])
        assert pipe.recv() == (("echo", "t3"), [image[::-1], b"ksam"])
        pipe.send(("stop",))
        proc.join(timeout=30)
        assert proc.exitcode == 0
        with pytest.raises(EOFError):
            pipe.recv()
    finally:
        pipe.close()
        if proc.is_alive():
            proc.kill()


def test_a_peer_that_closes_mid_message_is_an_eof(pair):
    left, right = pair
    raw = socket.socket(fileno=os.dup(left.fileno()))
    header = pickle.dumps((("result", "t4"), [1000]))
    raw.sendall(struct.pack("!I", len(header)) + header + b"only part of the body")
    raw.close()
    left.close()
    with pytest.raises(EOFError):
        right.recv()


def test_a_pipe_that_is_not_a_socket_carries_the_same_messages():
    reader, writer = mp.Pipe(duplex=False)  # os.pipe() underneath: no socket options, no MSG_WAITALL
    r, w = ChildPipe(reader), ChildPipe(writer)
    try:
        w.send(("progress", "t5", 50.0, 1, 2))
        w.send(("result", "t5"), [b"body", b""])
        assert r.recv() == (("progress", "t5", 50.0, 1, 2), [])
        assert r.recv() == (("result", "t5"), [b"body", b""])
    finally:
        r.close()
        w.close()


def test_the_socket_buffers_are_enlarged_where_the_kernel_allows():
    plain_a, plain_b = socket.socketpair()
    default = plain_a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    plain_a.close()
    plain_b.close()
    try:
        with open("/proc/sys/net/core/wmem_max") as fh:
            cap = int(fh.read())
    except OSError:
        pytest.skip("no /proc/sys/net/core/wmem_max here: the kernel's cap is unknown")
    if cap <= default:
        pytest.skip(f"the kernel caps socket buffers at {cap} bytes, the default here")
    a, b = mp.Pipe()
    end = ChildPipe(a)
    try:
        probe = socket.socket(fileno=os.dup(end.fileno()))
        try:
            assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= min(BUFFER_BYTES, cap) > default
        finally:
            probe.close()
    finally:
        end.close()
        b.close()


def test_a_closed_end_has_no_descriptor_to_poll(pair):
    left, _ = pair
    left.close()
    with pytest.raises(OSError):
        left.fileno()
