"""The Pipe between a node and its inference child: a small pickled header, then the large byte
strings of the message (an upload, a result) raw, each copied once by the kernel on either side.

Why not ``Connection.send``/``recv``: a message with a 3 MB image was pickled (a copy), written,
read back in chunks into a ``BytesIO`` (two more copies, on fresh pages) and unpickled (another).
Measured between two processes on the 2-core box, a 3.3 MB round trip took 7-8 ms that way with
glibc's default malloc settings and 1.0-1.4 ms with the node's (``malloc_tuning``), against 0.5-0.6
ms in both cases here: the header goes pickled, and each byte string is written with ``sendall`` and
read with one ``recv(n, MSG_WAITALL)`` into the ``bytes`` object it ends up as. In a node serving
1080p PNG requests its main process spent 6.7-7.7 ms of CPU a task without the malloc settings (off,
or a libc they do not apply to, such as musl) and 4.2-4.5 ms with this framing; with them, the same
4.0-4.7 ms either way.

A message is ``(fields, blobs)``: ``fields`` a tuple of plain data (the message's kind first, see
:mod:`.inference` for the kinds), ``blobs`` a sequence of bytes-like objects that travel after it.
On the wire: a 4-byte big-endian header length, the header (``pickle`` of ``(fields, sizes)``),
then the blobs back to back. Where a Pipe is not a socket (Windows), the header and each blob go
as messages of the ``Connection`` itself, which is slower but the same to both ends.

One end is used by one thread at a time (the inference child serialises its task threads' sends
with a lock); neither end is thread-safe by itself.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

_LENGTH = struct.Struct("!I")

BUFFER_BYTES = 4 * 1024 * 1024
"""Socket buffer size asked for on both ends. The default (about 200 KiB) splits a 1 MB image into
many write/wake-up/read rounds between the two processes; 4 MiB moves it in one (measured: a 1 MB
round trip 2.0 ms -> 0.4-1.0 ms). The kernel caps it at ``net.core.wmem_max``/``rmem_max``, which
only makes it smaller, never wrong."""

Message = tuple[tuple[Any, ...], list[bytes]]


class ChildPipe:
    """One end of the node <-> inference child Pipe (made from a ``multiprocessing`` Pipe end, which
    it takes over: close this, not the ``Connection``)."""

    def __init__(self, conn: Connection) -> None:
        self._sock: socket.socket | None = None
        self._conn: Connection | None = None
        try:
            self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        except (OSError, ValueError):
            self._conn = conn  # not a socket (a Windows pipe): its own framing carries each part
            return
        conn.close()  # the socket holds the only descriptor now: closing it is what the peer sees
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
            except OSError:
                pass

    def fileno(self) -> int:
        """The descriptor to poll for readability; OSError once closed."""
        if self._sock is None:
            assert self._conn is not None
            return self._conn.fileno()
        fd = self._sock.fileno()
        if fd < 0:
            raise OSError("the Pipe is closed")
        return fd

    def send(self, fields: tuple[Any, ...], blobs: Sequence[bytes] = ()) -> None:
        """Send one message; blocks until the kernel took all of it. Raises OSError (or ValueError on
        a closed end) when the other end is gone."""
        header = pickle.dumps((fields, [len(b) for b in blobs]), protocol=pickle.HIGHEST_PROTOCOL)
        if self._sock is None:
            conn = self._conn
            assert conn is not None
            conn.send_bytes(header)
            for blob in blobs:
                conn.send_bytes(blob)
            return
        self._sock.sendall(_LENGTH.pack(len(header)) + header)
        for blob in blobs:
            self._sock.sendall(blob)

    def recv(self) -> Message:
        """The next message; blocks until all of it arrived. Raises EOFError when the other end
        closed (or died), OSError when the Pipe broke."""
        if self._sock is None:
            conn = self._conn
            assert conn is not None
            fields, sizes = pickle.loads(conn.recv_bytes())
            return fields, [conn.recv_bytes() for _ in sizes]
        (length,) = _LENGTH.unpack(self._read(_LENGTH.size))
        fields, sizes = pickle.loads(self._read(length))
        return fields, [self._read(size) for size in sizes]

    def _read(self, size: int) -> bytes:
        sock = self._sock
        assert sock is not None
        data = sock.recv(size, socket.MSG_WAITALL)  # one copy, into the bytes returned
        if len(data) == size:
            return data
        parts = [data]  # a signal (or the peer's exit) cut the wait short
        got = len(data)
        while got < size:
            more = sock.recv(size - got, socket.MSG_WAITALL)
            if not more:
                raise EOFError("the other end of the Pipe closed")
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def close(self) -> None:
        try:
            if self._sock is not None:
                self._sock.close()
            elif self._conn is not None:
                self._conn.close()
        except OSError:
            pass
