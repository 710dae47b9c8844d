"""Local HTTP stand-ins for the two serverless invoke APIs, so the real SDKs talk real HTTP to them.

- AWS Lambda ``Invoke``: ``POST /2015-03-31/functions/{name}/invocations`` (``X-Amz-Invocation-Type``);
  errors as Lambda sends them (``x-amzn-ErrorType`` header, JSON body, ``Retry-After`` on 429).
- Function Compute 3.0 ``InvokeFunction``: ``POST /2023-03-30/functions/{name}/invocations``
  (``x-fc-invocation-type``, ``x-fc-async-task-id``); errors as ``{"Code", "Message", "RequestId"}``.

Each platform answers 202 unless a scripted answer is queued for it (``script("lambda", 429, ...)``),
or it is switched to a standing answer (``outage("fc", 503, ...)``) until ``restore``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_LAMBDA = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
_FC = re.compile(r"^/2023-03-30/functions/([^/]+)/invocations$")


@dataclass(frozen=True)
class Invocation:
    platform: str
    function: str
    invocation_type: str | None
    task_id: str | None
    payload: dict[str, Any]
    answered: int


@dataclass(frozen=True)
class Answer:
    status: int
    code: str = ""
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class CloudEndpoints:
    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self._scripts: dict[str, list[Answer]] = {"lambda": [], "fc": []}
        self._standing: dict[str, Answer | None] = {"lambda": None, "fc": None}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="cloud-endpoints", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CloudEndpoints:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def script(self, platform: str, status: int, code: str = "", message: str = "", **headers: str) -> None:
        """Answer the next request to ``platform`` with this error (once)."""
        with self._lock:
            self._scripts[platform].append(Answer(status, code, message, tuple(headers.items())))

    def outage(self, platform: str, status: int, code: str = "", message: str = "", **headers: str) -> None:
        """Answer every request to ``platform`` with this error until :meth:`restore`."""
        with self._lock:
            self._standing[platform] = Answer(status, code, message, tuple(headers.items()))

    def restore(self, platform: str) -> None:
        with self._lock:
            self._standing[platform] = None

    def accepted(self, platform: str) -> list[Invocation]:
        with self._lock:
            return [i for i in self.invocations if i.platform == platform and i.answered == 202]

    def _answer_for(self, platform: str) -> Answer:
        with self._lock:
            if self._scripts[platform]:
                return self._scripts[platform].pop(0)
            return self._standing[platform] or Answer(202)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return None

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.partition("?")[0]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if m := _LAMBDA.match(path):
                    platform, kind, task = "lambda", self.headers.get("X-Amz-Invocation-Type"), None
                elif m := _FC.match(path):
                    platform = "fc"
                    kind, task = self.headers.get("x-fc-invocation-type"), self.headers.get("x-fc-async-task-id")
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = cloud._answer_for(platform)
                try:
                    payload = json.loads(raw) if raw else {}
                except ValueError:
                    payload = {"raw": raw.decode(errors="replace")}
                with cloud._lock:
                    cloud.invocations.append(Invocation(platform, m.group(1), kind, task, payload, answer.status))
                request_id = f"req-{next(cloud._ids)}"
                if answer.status == 202:
                    body = b""
                    headers = (
                        {"x-amzn-RequestId": request_id} if platform == "lambda" else {"x-fc-request-id": request_id}
                    )
                elif platform == "lambda":
                    body = json.dumps({"Type": "User", "message": answer.message, **_lambda_extra(answer)}).encode()
                    headers = {"x-amzn-ErrorType": answer.code, "x-amzn-RequestId": request_id,
                               "Content-Type": "application/json"}  # fmt: skip
                else:
                    body = json.dumps(
                        {"Code": answer.code, "Message": answer.message, "RequestId": request_id}
                    ).encode()
                    headers = {"Content-Type": "application/json", "x-fc-request-id": request_id}
                headers.update(dict(answer.headers))
                self.send_response(answer.status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _lambda_extra(answer: Answer) -> dict[str, str]:
    return {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"} if answer.status == 429 else {}
