"""A loopback TCP proxy for network faults: the real node and scheduler talk through it, and a test
breaks the network between them for real.

Two faults: :meth:`LoopbackProxy.cut` drops every open connection and refuses new ones until
:meth:`~LoopbackProxy.restore` (a network outage: ZeroMQ reconnects on its own afterwards), and
:meth:`~LoopbackProxy.cut_to_client` goes deaf one way on the connections open now (scheduler ->
node bytes are read and dropped, so the scheduler's side of the ZMTP stream stays intact, while node
-> scheduler bytes still flow: the scheduler keeps hearing the node, the node hears nothing).
"""

from __future__ import annotations

import socket
import threading


class LoopbackProxy:
    """Forwards connections from a 127.0.0.1 port (``endpoint``; ``listen_port``, or a free one) to
    ``target_port``."""

    def __init__(self, target_port: int, listen_port: int = 0) -> None:
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", listen_port))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.connections = 0
        """Connections forwarded so far (those refused during a cut are not counted)."""
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._deaf: set[int] = set()
        self._down = False
        self._closed = False
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    # ------------------------------------------------------------------ faults
    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            self._down = True
            dropped, self._pairs = self._pairs, []
        for pair in dropped:
            for sock in pair:
                _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def cut_to_client(self) -> None:
        """Stop forwarding target -> client bytes on the connections open now (new ones forward)."""
        with self._lock:
            self._deaf = {id(client) for client, _ in self._pairs}

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self.listener)

    # ------------------------------------------------------------------ forwarding
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, id(client)), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, deaf_key: int | None) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    deaf = deaf_key is not None and deaf_key in self._deaf
                if not deaf:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
