"""A small HTTP server for a process without Flask: the standalone scheduler's optional metrics port.

It answers ``/metrics`` (Prometheus text), ``/api/v1/metrics`` (the JSON document) and
``/api/v1/metrics/history``, binds loopback unless told otherwise, and fails loudly at start when the port
is taken, rather than leaving the process running without its endpoint. With API tokens configured
(``[server.tokens]`` in the same config file) every path needs a bearer token with the ``metrics`` scope,
as on the web server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ....server.auth import METRICS, Forbidden, TokenTable, Unauthorized, authorize, bearer_secret
from .hub import MetricsHub

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client must not keep the process from exiting


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("metrics server: " + format, *args)


class MetricsServer:
    """``start()`` binds and serves on a daemon thread; ``stop()`` closes the socket."""

    def __init__(
        self, hub: MetricsHub, host: str = "127.0.0.1", port: int = 0, *, tokens: TokenTable | None = None
    ) -> None:
        self.hub = hub
        self.tokens = tokens
        self.host = host
        self.port = port
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MetricsServer:
        try:
            server = make_server(self.host, self.port, self._app, _ThreadingWSGIServer, _QuietHandler)
        except OSError as exc:
            raise OSError(
                exc.errno, f"monitor: cannot serve metrics on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self._server = server  # type: ignore[assignment]
        self.port = server.server_port
        self._thread = threading.Thread(target=self._serve, name="lama-cleaner-metrics", daemon=True)
        self._thread.start()
        log.info("monitor: metrics at %s/metrics", self.url)
        return self

    def _serve(self) -> None:
        assert self._server is not None
        try:
            self._server.serve_forever(poll_interval=0.2)
        except Exception:  # noqa: BLE001 - said out loud: an endpoint that dies silently is worse
            log.exception("monitor: the metrics server stopped unexpectedly")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain; charset=utf-8")
        try:
            authorize(self.tokens, bearer_secret(environ.get("HTTP_AUTHORIZATION")), METRICS)
        except (Unauthorized, Forbidden) as exc:
            status = "401 Unauthorized" if isinstance(exc, Unauthorized) else "403 Forbidden"
            headers = list(getattr(exc, "headers", {}).items())
            return _reply(start_response, status, f"{exc}\n".encode(), "text/plain; charset=utf-8", headers)
        if path == "/metrics":
            body, content_type = self.hub.exposition(environ.get("HTTP_ACCEPT"))
            return _reply(start_response, "200 OK", body, content_type)
        if path == "/api/v1/metrics":
            return _json(start_response, self.hub.document())
        if path == "/api/v1/metrics/history":
            return _json(start_response, {"points": self.hub.history_points()})
        return _reply(start_response, "404 Not Found", b"not found\n", "text/plain; charset=utf-8")


def _json(start_response: StartResponse, data: Any) -> list[bytes]:
    return _reply(start_response, "200 OK", json.dumps(data).encode(), "application/json")


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(extra or [])])
    return [body]
