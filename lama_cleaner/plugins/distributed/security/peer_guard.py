"""The scheduler's per-message check of who sent what, when its sockets use CURVE.

The handshake (ZAP) admits a key once per connection; a key removed from the allow-list afterwards
must stop working at once, not at the peer's next reconnect. So every message is received with its
sender's key (libzmq attaches the ``User-Id`` the authenticator gave the connection, here the Z85
public key, to the ROUTER's identity frame) and one from a key that is no longer allowed is dropped,
logged and counted before anything parses it. The key of each connection is remembered by its
ROUTER identity so that handlers can bind a node id to the key that registered it (a peer cannot
report, pull or reconnect as another node). Messages from the ``inproc://`` endpoint carry no key:
only this process can reach it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import zmq

from .key_roles import KeyRoles

log = logging.getLogger(__name__)

_NOBLOCK = int(zmq.NOBLOCK)
MAX_REMEMBERED = 4096
"""Connections whose key is remembered per socket (least recently heard ones are forgotten)."""


class PeerGuard:
    def __init__(self, allow: KeyRoles, on_reject: Callable[[str], None]) -> None:
        self.allow = allow
        self.on_reject = on_reject
        self._keys: dict[zmq.Socket, OrderedDict[bytes, str]] = {}
        self._logged_at = 0.0

    def recv(self, sock: zmq.Socket) -> list[bytes] | None:
        """One message (identity first) like ``recv_multipart(NOBLOCK)``; None when it came from a
        key that is no longer allowed (it was dropped). Raises ``zmq.Again`` when nothing waits."""
        first = sock.recv(_NOBLOCK, copy=False)
        frames = [first.bytes]
        while sock.rcvmore:
            frames.append(sock.recv(_NOBLOCK))
        try:
            key = first.get("User-Id")
        except zmq.ZMQError:  # inproc: no handshake, no key
            return frames
        if not self.allow.allows(key.encode("ascii")):
            self.on_reject("revoked")
            now = time.monotonic()
            if now - self._logged_at >= 1.0:
                self._logged_at = now
                log.warning("dropped a message from CURVE key %s, which is no longer allowed", key)
            return None
        known = self._keys.setdefault(sock, OrderedDict())
        if known.get(frames[0]) != key:
            known[frames[0]] = key
            if len(known) > MAX_REMEMBERED:
                known.popitem(last=False)
        else:
            known.move_to_end(frames[0])
        return frames

    def may(self, sock: zmq.Socket | None, ident: bytes, role: str) -> bool:
        """Whether the connection ``ident`` on ``sock`` holds a key that may play ``role``
        (``key_roles.NODE`` or ``PRODUCER``); True for inproc (only this process) and a connection not seen."""
        key = self.key_of(sock, ident)
        return key is None or self.allow.may(key.encode("ascii"), role)

    def key_of(self, sock: zmq.Socket | None, ident: bytes) -> str | None:
        """The Z85 key of the connection ``ident`` on ``sock`` (None: inproc, or not seen)."""
        known = self._keys.get(sock) if sock is not None else None
        return known.get(ident) if known is not None else None
