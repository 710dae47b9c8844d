"""ZeroMQ ``tcp://`` endpoints: parsing, and turning "every interface" into an address to connect to.

A scheduler may bind ``tcp://0.0.0.0:5570`` or ``tcp://*:5570`` and report its endpoints as bound, but
a wildcard host means "any interface" only to ``bind``: a peer has to connect somewhere concrete. The
web server reaches its own embedded scheduler over loopback (:func:`connectable`); a node reaches a
granted queue through the host it already used for the control endpoint (:func:`queue_endpoint_for`),
or, when it came in through the address a scheduler behind a NAT or proxy advertises, through the queue
addresses advertised with it (:func:`granted_queues`). Pure string logic, no sockets, so the rules are
tested directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WILDCARD_HOSTS = frozenset({"*", "0.0.0.0", "::", "[::]", "[*]"})
"""Hosts that mean "every interface" in a bind address (IPv4, ZeroMQ's ``*``, IPv6 with or without brackets)."""

LOOPBACK = "127.0.0.1"

_SCHEME = "tcp://"


@dataclass(frozen=True)
class TcpEndpoint:
    """``tcp://[source;]host:port`` split into its parts (``source`` is ZeroMQ's connect-from syntax)."""

    host: str
    port: str
    source: str | None = None

    def __str__(self) -> str:
        source = f"{self.source};" if self.source else ""
        return f"{_SCHEME}{source}{self.host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        return self.host in WILDCARD_HOSTS


def parse_tcp(endpoint: str) -> TcpEndpoint | None:
    """The parts of a ``tcp://`` endpoint, or None for another transport or text without ``host:port``.

    The port is the text after the last colon, so bracketed and bare IPv6 hosts (``[::]``, ``::``)
    keep their own colons.
    """
    if not endpoint.startswith(_SCHEME):
        return None
    rest = endpoint[len(_SCHEME) :]
    source: str | None = None
    if ";" in rest:  # "source;destination": the destination is the peer
        source, rest = rest.split(";", 1)
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port:
        return None
    return TcpEndpoint(host, port, source or None)


def connectable(endpoint: str) -> str:
    """A bind address of this machine as an address to connect to: a wildcard host becomes loopback.

    ``tcp://*:5570`` / ``tcp://0.0.0.0:5570`` -> ``tcp://127.0.0.1:5570``; anything else is returned as is.
    """
    parsed = parse_tcp(endpoint)
    if parsed is None or not parsed.is_wildcard:
        return endpoint
    return str(dataclasses.replace(parsed, host=LOOPBACK))


def queue_endpoint_for(granted: str, control: str) -> str:
    """The address to connect to for a queue endpoint granted in WELCOME.

    The scheduler reports queue endpoints as it bound them, so one listening on every interface
    grants ``tcp://0.0.0.0:5571``, which no remote node can reach. A wildcard host is replaced by
    the host used to reach the control endpoint (which, by construction, reaches the scheduler);
    anything else, or a control endpoint that is itself a wildcard or not ``tcp://``, leaves the
    grant as it is.
    """
    granted_parts = parse_tcp(granted)
    control_parts = parse_tcp(control)
    if granted_parts is None or control_parts is None:
        return granted
    if not granted_parts.is_wildcard or control_parts.is_wildcard:
        return granted
    return str(dataclasses.replace(granted_parts, host=control_parts.host))


def same_endpoint(a: str, b: str) -> bool:
    """Whether two ``tcp://`` endpoints name the same host (case aside) and port; False for anything else."""
    pa, pb = parse_tcp(a), parse_tcp(b)
    return pa is not None and pb is not None and pa.host.lower() == pb.host.lower() and pa.port == pb.port


def granted_queues(welcome: Mapping[str, Any], control: str) -> dict[str, str]:
    """The queue grants a node joins, from its WELCOME header and the control endpoint it connected to.

    A scheduler behind a NAT or proxy (``distributed.scheduler_advertise``) adds ``advertised``
    (protocol minor 3): the control address as the outside sees it and each queue's. A node that came in
    through exactly that address joins the advertised queues; any other (a local node, one on the
    scheduler's own network) joins ``queues``, the addresses as bound, as a node that ignores
    ``advertised`` does. A malformed ``advertised`` is ignored.
    """
    bound: dict[str, str] = dict(welcome["queues"])
    advertised = welcome.get("advertised")
    if not isinstance(advertised, Mapping):
        return bound
    outside = advertised.get("control")
    queues = advertised.get("queues")
    if not isinstance(outside, str) or not isinstance(queues, Mapping) or not same_endpoint(outside, control):
        return bound
    return {q: queues[q] if isinstance(queues.get(q), str) else granted for q, granted in bound.items()}
