"""``endpoints``: parsing ``tcp://`` endpoints and replacing wildcard hosts with reachable ones."""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.distributed.wire.endpoints import (
    TcpEndpoint,
    connectable,
    granted_queues,
    parse_tcp,
    queue_endpoint_for,
    same_endpoint,
)


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


BOUND = {"gpu": "tcp://10.0.0.5:5571", "cpu": "tcp://10.0.0.5:5572"}
OUTSIDE = {"control": "tcp://gw.example.com:15570", "queues": {"gpu": "tcp://gw.example.com:15571",
                                                              "cpu": "tcp://gw.example.com:15572"}}  # fmt: skip


@pytest.mark.parametrize(
    ("control", "expected"),
    [
        # Came in through the advertised address: the advertised queues (host case does not matter).
        ("tcp://gw.example.com:15570", OUTSIDE["queues"]),
        ("tcp://GW.example.com:15570", OUTSIDE["queues"]),
        # Anything else (the bound address, a local node, another name or port): the bound queues.
        ("tcp://10.0.0.5:5570", BOUND),
        ("tcp://127.0.0.1:5570", BOUND),
        ("tcp://gw.example.com:5570", BOUND),
        ("tcp://203.0.113.9:15570", BOUND),
    ],
)
def test_granted_queues_are_the_advertised_ones_only_through_the_advertised_address(control, expected):
    assert granted_queues({"queues": BOUND, "advertised": OUTSIDE}, control) == expected


@pytest.mark.parametrize(
    "advertised",
    [
        None,
        "tcp://gw.example.com:15570",
        {"control": 5},
        {"control": "tcp://gw.example.com:15570"},
        {"control": "tcp://gw.example.com:15570", "queues": ["gpu"]},
    ],  # fmt: skip
)
def test_a_malformed_or_missing_advertisement_leaves_the_bound_queues(advertised):
    welcome = {"queues": BOUND} if advertised is None else {"queues": BOUND, "advertised": advertised}
    assert granted_queues(welcome, "tcp://gw.example.com:15570") == BOUND


def test_an_advertisement_missing_a_queue_keeps_that_queue_bound():
    partial = {"control": OUTSIDE["control"], "queues": {"gpu": "tcp://gw.example.com:15571", "cpu": 7}}
    got = granted_queues({"queues": BOUND, "advertised": partial}, OUTSIDE["control"])
    assert got == {"gpu": "tcp://gw.example.com:15571", "cpu": BOUND["cpu"]}


def test_same_endpoint():
    assert same_endpoint("tcp://Host:1", "tcp://host:1")
    assert not same_endpoint("tcp://host:1", "tcp://host:2")
    assert not same_endpoint("ipc:///x", "ipc:///x")
