"""A bounded slow-client load generator: many sockets to one server, some idle, some trickling a
request one byte at a time (slowloris), kept open (re-opened when the server closes them) until a
deadline, then all closed. It stops by itself: one thread, a fixed number of sockets, a deadline.

Used to show that the web server keeps serving real requests while its connections are taken by
clients that send nothing or almost nothing.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

TRICKLE_HEAD = b"POST /inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
TRICKLE_FILLER = b"X-Slow: " + b"a" * 64


@dataclass
class SlowClientStats:
    opened: int = 0
    reopened: int = 0
    bytes_sent: int = 0
    peak_open: int = 0
    open_now: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


class SlowClients:
    """``count`` sockets to ``host:port`` for ``duration_s``: every second one trickles, the others idle."""

    def __init__(self, host: str, port: int, count: int = 500, duration_s: float = 30.0, interval_s: float = 0.5):
        self.host, self.port = host, port
        self.count = count
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.stats = SlowClientStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ control
    def start(self) -> SlowClients:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask it to stop now; True once its thread has ended (all sockets closed)."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def open_now(self) -> int:
        with self._lock:
            return self.stats.open_now

    # ------------------------------------------------------------------ the loop
    def _connect(self, sel: selectors.BaseSelector, slot: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect_ex((self.host, self.port))
        except OSError as exc:
            self.stats.refused += 1
            self.stats.errors.append(repr(exc))
            sock.close()
            return
        trickling = slot % 2 == 0
        state = {"slot": slot, "trickling": trickling, "sent_head": 0, "next": time.monotonic()}
        sel.register(sock, selectors.EVENT_READ, state)

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration_s
        sel = selectors.DefaultSelector()
        try:
            for slot in range(self.count):
                self._connect(sel, slot)
                self.stats.opened += 1
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._trickle(sel)
                for key, _ in sel.select(timeout=0.05):
                    self._on_readable(sel, key)
                with self._lock:
                    self.stats.open_now = len(sel.get_map())
                    self.stats.peak_open = max(self.stats.peak_open, self.stats.open_now)
        finally:
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()
            with self._lock:
                self.stats.open_now = 0

    def _trickle(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            state = key.data
            if not state["trickling"] or state["next"] > now:
                continue
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            data = TRICKLE_HEAD + TRICKLE_FILLER
            index = state["sent_head"] % len(data)
            try:
                sent = sock.send(data[index : index + 1])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._reopen(sel, key)
                continue
            state["sent_head"] += sent
            self.stats.bytes_sent += sent
            state["next"] = now + self.interval_s

    def _on_readable(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        """The server answered or closed: either way this slot opens a fresh connection."""
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        try:
            sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._reopen(sel, key)  # an answer (a 4xx) or a close: this slot connects afresh

    def _reopen(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        sel.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]
        if self._stop.is_set():
            return
        self._connect(sel, key.data["slot"])
        self.stats.reopened += 1
