"""Serve the app through gunicorn's threaded worker, in this process, instead of Werkzeug's
development server.

Why gunicorn's ``gthread`` worker: Flask-SocketIO supports it in ``threading`` mode (WebSocket
through simple-websocket, which reads ``environ["gunicorn.socket"]``), so the Socket.IO front end,
its progress events and ``/api/v1`` work unchanged; a connection that sends nothing is parked on
a poller instead of holding a thread, and the number of connections is bounded.

Why in this process, with no arbiter: gunicorn's master forks its workers, and our app owns threads
(the executor, the event dispatchers, an embedded scheduler) that a fork would not carry over. The
worker class is run here directly on a socket we bind ourselves (so a port in use is the same
one-line error as before); ``serve`` keeps its own start-up, shutdown hooks and exit codes.

One thread per connection being read or answered: WebSocket connections hold theirs for their
lifetime, and so does a client that trickles its request, so ``server.threads`` is large and the
threads are daemons (a client that never finishes its request must not keep the process alive
once the server has stopped).

SIGTERM drains first (:mod:`.draining`): new work is refused with 503 while requests in flight
finish, for at most ``server.shutdown_grace_s``; then the worker stops, closing what is left.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flask import Flask
from flask_socketio import SocketIO
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.sock import TCP6Socket, TCPSocket
from gunicorn.workers.gthread import ThreadWorker

from ..config import Config
from .draining import Drain

log = logging.getLogger(__name__)

STOP_LINGER_S = 2
"""After draining, how long the worker still waits for connections left open (idle keep-alive,
Socket.IO); they are closed after that."""
BACKLOG = 2048


class DaemonThreadPool:
    """The part of ``ThreadPoolExecutor`` the worker uses (``submit``, ``shutdown``), with daemon
    threads started on demand up to ``max_workers``. The standard pool's threads are joined at
    interpreter exit, so one blocked on a client that never finishes its request would hang the
    stopped server forever."""

    def __init__(self, max_workers: int, name: str = "http") -> None:
        self._max = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._stopped = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError("the HTTP thread pool is shut down")
            if self._idle == 0 and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
            else:
                self._idle -= 1 if self._idle else 0
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the future, as ThreadPoolExecutor does
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._stopped = True
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)


class _Worker(ThreadWorker):
    """gunicorn's threaded worker with daemon threads and a drain before its own graceful stop."""

    drain: Drain
    socketio: SocketIO

    def get_thread_pool(self) -> DaemonThreadPool:  # type: ignore[override]
        return DaemonThreadPool(self.cfg.threads)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: refuse new work and wait for work in flight (off the signal handler), then close
        the Socket.IO connections (their threads end) and let the worker stop."""

        def stop() -> None:
            close_socketio(self.socketio)
            ThreadWorker.handle_exit(self, sig, frame)

        self.drain.begin(on_drained=stop)


class _WsgiApp(BaseApplication):
    """The smallest gunicorn application: our settings and the already built Flask app."""

    def __init__(self, wsgi: Any, options: dict[str, Any]) -> None:
        self._wsgi = wsgi
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._wsgi


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (an ``OSError`` here is the caller's 'cannot serve on HOST:PORT')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def serve(app: Flask, socketio: SocketIO, config: Config) -> None:
    """Serve ``app`` on ``config.host:config.port`` until SIGTERM (drained) or SIGINT (at once)."""
    settings = config.server
    listener = bind(config.host, config.port)
    drain = Drain.install(app, grace_s=settings.shutdown_grace_s)
    options = {
        "worker_class": "gthread",
        "workers": 1,
        "threads": settings.threads,
        "worker_connections": settings.max_connections,
        "keepalive": 5,
        "graceful_timeout": STOP_LINGER_S,
        "timeout": 0,
        "backlog": BACKLOG,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
    }
    application = _WsgiApp(app, options)
    cfg = application.cfg
    logger = Logger(cfg)
    family = TCP6Socket if listener.family == socket.AF_INET6 else TCPSocket
    sockets = [family(listener.getsockname()[:2], cfg, logger, fd=os.dup(listener.fileno()))]
    listener.close()
    worker = _Worker(0, os.getppid(), sockets, application, 0, cfg, logger)
    worker.drain = drain
    worker.socketio = socketio
    log.info("serving http://%s:%s (gunicorn gthread, %d threads)", config.host, config.port, settings.threads)
    try:
        worker.init_process()  # runs until stopped; returns after the worker's own graceful close
    finally:
        close_socketio(socketio)
        worker.tmp.close()


def close_socketio(socketio: SocketIO) -> None:
    """Disconnect every Socket.IO client without waiting for it to hear so (a long-polling client may
    never come back), so that WebSocket threads end with the server."""
    try:
        eio = socketio.server.eio  # type: ignore[union-attr]
        for client in list(eio.sockets.values()):
            client.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
        eio.sockets = {}
    except Exception:  # noqa: BLE001 - best effort while stopping
        log.debug("closing Socket.IO connections failed", exc_info=True)
