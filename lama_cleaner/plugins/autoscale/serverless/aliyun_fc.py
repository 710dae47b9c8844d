"""Alibaba Cloud Function Compute 3.0 entry point for a custom container:
``python -m lama_cleaner.plugins.autoscale.serverless.aliyun_fc``.

FC turns each ``InvokeFunction`` (the ``aliyun-fc`` provider's asynchronous invocations) into an
HTTP ``POST /invoke`` whose body is the event: here an :class:`InstancePayload`. The server runs one
node for it (:func:`run_instance`) and answers when the node has left. ``POST /pre-stop`` (FC's
PreStop lifecycle hook, sent before an instance is reclaimed) asks running nodes to hand their work
back and stop. FC does not tell a container its function's timeout, so the deployment sets
``LAMA_CLEANER_FUNCTION_TIMEOUT_S`` to it (default 600); the node stops ``stop_before_limit_s``
before it. The port is ``FC_SERVER_PORT`` (FC's variable), else 9000.

This HTTP server is the platform's own way in; the node itself only connects out to the scheduler.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .instance import run_instance
from .payload import InstancePayload

log = logging.getLogger(__name__)

TIMEOUT_ENV = "LAMA_CLEANER_FUNCTION_TIMEOUT_S"
PORT_ENV = "FC_SERVER_PORT"
DEFAULT_PORT = 9000
DEFAULT_TIMEOUT_S = 600.0


class _Instances:
    """Stop events of the invocations running in this container."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stops: set[threading.Event] = set()

    def add(self, stop: threading.Event) -> None:
        with self._lock:
            self._stops.add(stop)

    def discard(self, stop: threading.Event) -> None:
        with self._lock:
            self._stops.discard(stop)

    def stop_all(self) -> int:
        with self._lock:
            for stop in self._stops:
                stop.set()
            return len(self._stops)


def invoke(body: bytes, timeout_s: float, instances: _Instances) -> dict[str, Any]:
    """Run one invocation (what ``POST /invoke`` does); ValueError for a bad payload."""
    payload = InstancePayload.from_json(body)
    deadline = time.monotonic() + timeout_s
    stop = threading.Event()
    instances.add(stop)
    try:
        return run_instance(payload, lambda: deadline - time.monotonic(), stop=stop).to_dict()
    finally:
        instances.discard(stop)


def make_server(port: int, timeout_s: float, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    instances = _Instances()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/invoke":
                try:
                    result = invoke(body, timeout_s, instances)
                except ValueError as exc:
                    self._answer(400, {"error": str(exc)})
                    return
                self._answer(200, result)
            elif self.path == "/pre-stop":
                self._answer(200, {"stopping": instances.stop_all()})
            else:
                self._answer(404, {"error": f"no such path {self.path}"})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("fc: " + format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s fc-handler: %(message)s")
    port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    timeout_s = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    server = make_server(port, timeout_s)
    log.info("serving FC invocations on port %s (function timeout %g s)", port, timeout_s)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
