"""CURVE on the scheduler's and its peers' sockets, from the ``[distributed]`` settings.

The scheduler is the CURVE server: its ROUTERs hold its secret key and a ZAP authenticator (a
thread of pyzmq's ``zmq.auth``, one per scheduler context) asks the allow-lists
(:class:`~.key_roles.KeyRoles`) about every client key at the handshake; an unknown key never gets a
connection, so it can neither register, pull, read a task nor send a result. Every refusal is logged
(rate-limited) and counted through the ``on_reject`` callback: unknown keys by the ZAP callback, and
handshakes that fail before ZAP is asked (a peer without CURVE, or one that does not know the
scheduler's public key) by a socket monitor read in a thread of its own. Nodes and remote producers
are CURVE clients: their own key pair plus the scheduler's public key, which they verify (a man in
the middle without the scheduler's secret cannot complete the handshake).

Every socket also gets ``MAXMSGSIZE``: libzmq drops a connection that sends a larger frame before
any of it reaches Python, so a peer cannot make the scheduler (or a node) allocate without bound.
The ``inproc://`` endpoint of an embedded scheduler has no handshake (only this process can reach
it), so it is neither encrypted nor limited by a key.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from .allow_list import AllowList
from .key_files import KeyFileError, KeyPair, load_public, load_secret
from .key_roles import KeyRoles

log = logging.getLogger(__name__)

ZAP_DOMAIN = "lama-cleaner"
MB = 1024 * 1024
_LOG_EVERY_S = 1.0


def max_message_bytes(dist: Any) -> int:
    """``distributed.max_message_mb`` in bytes: the largest frame any socket accepts."""
    return int(dist.max_message_mb) * MB


def limit_socket(sock: zmq.Socket, dist: Any) -> None:
    """Frames larger than ``max_message_mb`` drop the sender's connection (inbound only)."""
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes(dist))


@dataclass(frozen=True)
class ClientKeys:
    """What a node or a remote producer needs: its own key pair and the scheduler's public key."""

    own: KeyPair
    server_public: bytes

    @classmethod
    def from_config(cls, dist: Any, server_public: bytes | None = None) -> ClientKeys | None:
        """None when ``curve_secret_key`` is unset (plaintext, loopback only). ``server_public``
        overrides ``curve_server_key`` (a local node is told its embedded scheduler's key)."""
        if not dist.curve_secret_key:
            return None
        own = load_secret(dist.curve_secret_key)
        if server_public is None:
            if not dist.curve_server_key:
                raise KeyFileError(
                    "distributed.curve_secret_key is set but distributed.curve_server_key is not: "
                    "give the scheduler's public key (its .key file or the Z85 text) to verify it"
                )
            server_public = load_public(dist.curve_server_key)
        return cls(own, server_public)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` (before it connects) a CURVE client of the scheduler."""
        sock.curve_secretkey = self.own.secret
        sock.curve_publickey = self.own.public
        sock.curve_serverkey = self.server_public


def secure_client(sock: zmq.Socket, keys: ClientKeys | None, dist: Any) -> None:
    """Everything a peer's socket needs before ``connect``: the size limit, and CURVE when keyed."""
    limit_socket(sock, dist)
    if keys is not None:
        keys.apply(sock)


class _KeyCheck:
    """The ZAP callback: allowed keys pass, every other one is counted and logged."""

    def __init__(self, allow: KeyRoles, on_reject: Callable[[str], None]) -> None:
        self.allow = allow
        self.on_reject = on_reject
        self._logged_at = 0.0
        self._quiet = 0

    def callback(self, domain: str, key: bytes) -> bool:
        if self.allow.allows(key):
            return True
        self.on_reject("handshake")
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            more = f" (and {self._quiet} more since the last line)" if self._quiet else ""
            log.warning("refused a peer with unknown CURVE key %s%s", key.decode("ascii", "replace"), more)
            self._logged_at, self._quiet = now, 0
        else:
            self._quiet += 1
        return False


_FAILED_HANDSHAKES = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
"""Monitor events of handshakes that failed before the allow-list was asked (those it refuses are
counted by the ZAP callback)."""


def describe_failure(event: dict[str, Any]) -> str:
    """A failed handshake's monitor event in words: the ZMTP protocol error (``value`` of a
    ``HANDSHAKE_FAILED_PROTOCOL``), else the errno of a ``HANDSHAKE_FAILED_NO_DETAIL``."""
    value = int(event.get("value") or 0)
    if int(event.get("event") or 0) == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        names = {zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "not a CURVE client",
                 zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "a CURVE client of another scheduler key"}  # fmt: skip
        return names.get(value, f"ZMTP protocol error {value:#x}")
    return f"{os.strerror(value) if value else 'no detail'}"


class _HandshakeWatch:
    """Reads the monitor sockets of the scheduler's ROUTERs and reports each failed handshake."""

    def __init__(self, on_reject: Callable[[str], None]) -> None:
        self.on_reject = on_reject
        self._monitors: list[zmq.Socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged_at = 0.0
        self._quiet = 0

    def add(self, sock: zmq.Socket) -> None:
        with self._lock:
            self._monitors.append(sock.get_monitor_socket(_FAILED_HANDSHAKES))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lama-cleaner-curve-monitor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        poller, known = zmq.Poller(), 0
        while not self._stop.is_set():
            with self._lock:
                for mon in self._monitors[known:]:
                    poller.register(mon, zmq.POLLIN)
                known = len(self._monitors)
            for mon, _ in poller.poll(100):
                try:
                    event = recv_monitor_message(mon, zmq.NOBLOCK)
                except zmq.ZMQError:
                    continue
                self._report(event)

    def _report(self, event: dict[str, Any]) -> None:
        self.on_reject("handshake")
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            more = f" (and {self._quiet} more since the last line)" if self._quiet else ""
            why = describe_failure(event)
            endpoint = event.get("endpoint", b"?").decode(errors="replace")
            log.warning("refused a peer on %s whose handshake failed (%s)%s", endpoint, why, more)
            self._logged_at, self._quiet = now, 0
        else:
            self._quiet += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            for mon in self._monitors:
                mon.close(0)
            self._monitors.clear()


class ServerSecurity:
    """The scheduler's side: its key pair, the allow-list and the ZAP authenticator of its context.

    ``start(ctx)`` before binding, ``apply(sock)`` on every ROUTER before ``bind``, ``stop()`` before
    the context is terminated."""

    def __init__(self, keys: KeyPair, allow: KeyRoles, on_reject: Callable[[str], None]) -> None:
        self.keys = keys
        self.allow = allow
        self.check = _KeyCheck(allow, on_reject)
        self.watch = _HandshakeWatch(on_reject)
        self._auth: ThreadAuthenticator | None = None

    @classmethod
    def from_config(cls, dist: Any, on_reject: Callable[[str], None]) -> ServerSecurity | None:
        """None without ``curve_secret_key``. The scheduler's own public key is always allowed, so
        the web server's local nodes, which use that key pair, need no entry in the folder."""
        if not dist.curve_secret_key:
            return None
        keys = load_secret(dist.curve_secret_key)
        nodes_only = AllowList(dist.curve_node_keys) if dist.curve_node_keys else None
        producers_only = AllowList(dist.curve_producer_keys) if dist.curve_producer_keys else None
        any_role = AllowList(dist.curve_authorized_keys, always=[keys.public])
        allow = KeyRoles(any_role, nodes_only, producers_only)
        return cls(keys, allow, on_reject)

    def start(self, ctx: zmq.Context) -> None:
        auth = ThreadAuthenticator(ctx, log=logging.getLogger(f"{__name__}.zap"))
        auth.start()
        auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self.check)
        self._auth = auth

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_server = True
        sock.curve_secretkey = self.keys.secret
        sock.curve_publickey = self.keys.public
        sock.zap_domain = ZAP_DOMAIN.encode("ascii")
        self.watch.add(sock)

    def stop(self) -> None:
        self.watch.stop()
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.stop()
