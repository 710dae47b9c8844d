"""A scheduler that listens beyond this machine must authenticate its peers.

Anything that reaches the control port of a plaintext scheduler can register as a node and receive
users' images, so a non-loopback bind without a CURVE key is refused at start-up with the command
that fixes it. Loopback stays open (one machine, the default), as before.
"""

from __future__ import annotations

import ipaddress

from ..wire.endpoints import parse_tcp

HOWTO = (
    "run `lama-cleaner keys generate scheduler` and set distributed.curve_secret_key to the "
    ".key_secret file it writes (see docs/security.md)"
)


class InsecureBind(RuntimeError):
    """The scheduler would listen on a public address without CURVE keys."""


def is_loopback(endpoint: str) -> bool:
    """Whether a ``tcp://HOST:PORT`` bind address only accepts connections from this machine.

    Wildcards (``*``, ``0.0.0.0``, ``::``) and host names other than ``localhost`` are not loopback
    (a name may resolve to any interface)."""
    parsed = parse_tcp(endpoint)
    if parsed is None:
        return endpoint.startswith(("inproc://", "ipc://"))
    host = parsed.host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(endpoint: str, *, has_keys: bool) -> None:
    """Raise :class:`InsecureBind` (one line, with the fix) for a public bind without keys."""
    if not has_keys and not is_loopback(endpoint):
        raise InsecureBind(f"refusing to listen on {endpoint} without CURVE keys: {HOWTO}")
