"""``endpoints``: parsing ``tcp://`` endpoints and replacing wildcard hosts with reachable ones."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.distributed.wire.endpoints import TcpEndpoint, connectable, parse_tcp, queue_endpoint_for


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp://127.0.0.1:5570", TcpEndpoint("127.0.0.1", "5570")),
        ("tcp://*:0", TcpEndpoint("*", "0")),
        ("tcp://gpu-box.lan:5570", TcpEndpoint("gpu-box.lan", "5570")),
        ("tcp://[::]:5571", TcpEndpoint("[::]", "5571")),
        ("tcp://:::5571", TcpEndpoint("::", "5571")),  # bare IPv6: the port follows the last colon
        ("tcp://192.168.1.7:0;10.0.0.5:5570", TcpEndpoint("10.0.0.5", "5570", source="192.168.1.7:0")),
        ("ipc:///tmp/q", None),
        ("tcp://nonsense", None),
        ("tcp://:5570", None),
        ("tcp://host:", None),
    ],
)
def test_parse_tcp(endpoint: str, expected: TcpEndpoint | None):
    assert parse_tcp(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:5570", "tcp://[::]:5571", "tcp://192.168.1.7:0;10.0.0.5:5570", "tcp://*:0"],
)
def test_parsed_endpoint_prints_as_it_was_written(endpoint: str):
    parsed = parse_tcp(endpoint)
    assert parsed is not None and str(parsed) == endpoint


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp://*:5570", "tcp://127.0.0.1:5570"),
        ("tcp://0.0.0.0:5570", "tcp://127.0.0.1:5570"),
        ("tcp://[::]:5570", "tcp://127.0.0.1:5570"),
        ("tcp://127.0.0.1:5570", "tcp://127.0.0.1:5570"),
        ("tcp://10.0.0.5:5570", "tcp://10.0.0.5:5570"),
        ("ipc:///tmp/control", "ipc:///tmp/control"),
        ("tcp://nonsense", "tcp://nonsense"),
    ],
)
def test_connectable_turns_a_wildcard_bind_into_loopback(endpoint: str, expected: str):
    assert connectable(endpoint) == expected


@pytest.mark.parametrize(
    ("granted", "control", "expected"),
    [
        ("tcp://0.0.0.0:5571", "tcp://10.0.0.5:5570", "tcp://10.0.0.5:5571"),
        ("tcp://*:5572", "tcp://gpu-box.lan:5570", "tcp://gpu-box.lan:5572"),
        ("tcp://[::]:5571", "tcp://[fd00::5]:5570", "tcp://[fd00::5]:5571"),
        ("tcp://:::5571", "tcp://10.0.0.5:5570", "tcp://10.0.0.5:5571"),
        ("tcp://[*]:5571", "tcp://10.0.0.5:5570", "tcp://10.0.0.5:5571"),
        # ZeroMQ's "source;destination" connect syntax: the destination host is the one to reuse.
        ("tcp://0.0.0.0:5571", "tcp://192.168.1.7:0;10.0.0.5:5570", "tcp://10.0.0.5:5571"),
        # A concrete host is used as granted, even if it differs from the control host.
        ("tcp://10.0.0.9:5571", "tcp://10.0.0.5:5570", "tcp://10.0.0.9:5571"),
        ("tcp://127.0.0.1:5571", "tcp://10.0.0.5:5570", "tcp://127.0.0.1:5571"),
        # Nothing better is known when the node itself was pointed at a wildcard.
        ("tcp://0.0.0.0:5571", "tcp://0.0.0.0:5570", "tcp://0.0.0.0:5571"),
        # Not tcp, or not parseable: left alone.
        ("ipc:///tmp/q", "tcp://10.0.0.5:5570", "ipc:///tmp/q"),
        ("tcp://0.0.0.0:5571", "ipc:///tmp/control", "tcp://0.0.0.0:5571"),
        ("tcp://nonsense", "tcp://10.0.0.5:5570", "tcp://nonsense"),
    ],
)
def test_queue_endpoint_for(granted: str, control: str, expected: str):
    assert queue_endpoint_for(granted, control) == expected
