"""A stand-in for the parts of the Kubernetes API server the provider uses, over real HTTP.

It serves ``deployments/{name}/scale`` (GET, PATCH with a resourceVersion check) and ``pods``
(GET list, PATCH), and plays the ReplicaSet: raising replicas creates pods, lowering them deletes
pods in the documented order (pending first, then the lowest ``pod-deletion-cost``, then the
newest). Every request is recorded so tests can assert the exact calls; ``fail_next`` answers the
next requests with an error status instead, and ``meddle_before_next_patch`` plays a concurrent writer.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COST = "controller.kubernetes.io/pod-deletion-cost"
_SCALE = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")


@dataclass
class Pod:
    name: str
    deployment: str
    created: int
    phase: str = "Running"
    annotations: dict[str, str] = field(default_factory=dict)

    def cost(self) -> int:
        return int(self.annotations.get(COST, "0"))


@dataclass
class Deployment:
    name: str
    replicas: int = 0
    resource_version: int = 1


class FakeApiServer:
    def __init__(self, namespace: str = "lama") -> None:
        self.namespace = namespace
        self.deployments: dict[str, Deployment] = {}
        self.pods: dict[str, Pod] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.fail_next: list[tuple[int, str, dict[str, str]]] = []
        self.meddle_before_next_patch = 0
        """Replicas another writer adds just before the next scale PATCH is applied (a concurrent change)."""
        self.lock = threading.Lock()
        self._seq = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-apiserver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # ------------------------------------------------------------------ the ReplicaSet's part
    def add_deployment(self, name: str, replicas: int = 0) -> None:
        with self.lock:
            self.deployments[name] = Deployment(name)
            self._reconcile(self.deployments[name], replicas)

    def pods_of(self, deployment: str) -> list[str]:
        with self.lock:
            return sorted(p.name for p in self.pods.values() if p.deployment == deployment)

    def _reconcile(self, dep: Deployment, replicas: int) -> None:
        dep.replicas = replicas
        dep.resource_version += 1
        mine = [p for p in self.pods.values() if p.deployment == dep.name]
        while len(mine) < replicas:
            n = next(self._seq)
            pod = Pod(f"{dep.name}-{n:05x}", dep.name, created=n)
            self.pods[pod.name] = pod
            mine.append(pod)
        if len(mine) > replicas:
            # pending first, then lower deletion cost, then newer
            order = sorted(mine, key=lambda p: (p.phase != "Pending", p.cost(), -p.created))
            for pod in order[: len(mine) - replicas]:
                del self.pods[pod.name]

    # ------------------------------------------------------------------ HTTP
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return None

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                        "reason": reason, "code": code}  # fmt: skip
                self._reply(code, body, headers)

            def _handle(self, method: str) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with server.lock:
                    server.requests.append((method, path, body))
                    if server.fail_next:
                        code, reason, headers = server.fail_next.pop(0)
                        return self._status(code, reason, f"injected {reason}", headers)
                    if m := _SCALE.match(path):
                        return self._scale(method, m.group(2), body)
                    if (m := _POD.match(path)) and method == "PATCH":
                        pod = server.pods.get(m.group(2))
                        if pod is None:
                            return self._status(404, "NotFound", f'pods "{m.group(2)}" not found')
                        pod.annotations.update(((body or {}).get("metadata") or {}).get("annotations") or {})
                        return self._reply(200, _pod_json(pod, server.namespace))
                    if _PODS.match(path) and method == "GET":
                        items = [_pod_json(p, server.namespace) for p in server.pods.values()]
                        return self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
                return self._status(404, "NotFound", f"no route {method} {path}")

            def _scale(self, method: str, name: str, body: Any) -> None:
                dep = server.deployments.get(name)
                if dep is None:
                    return self._status(404, "NotFound", f'deployments.apps "{name}" not found')
                if method == "PATCH":
                    if server.meddle_before_next_patch:
                        server._reconcile(dep, dep.replicas + server.meddle_before_next_patch)
                        server.meddle_before_next_patch = 0
                    wanted = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
                    if wanted and wanted != str(dep.resource_version):
                        return self._status(409, "Conflict", "the object has been modified")
                    server._reconcile(dep, int(body["spec"]["replicas"]))
                elif method != "GET":
                    return self._status(405, "MethodNotAllowed", method)
                self._reply(200, {
                    "kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": server.namespace,
                                 "resourceVersion": str(dep.resource_version)},
                    "spec": {"replicas": dep.replicas},
                    "status": {"replicas": dep.replicas, "selector": f"app={name}"},
                })  # fmt: skip

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._handle("GET")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

        return Handler


def _pod_json(pod: Pod, namespace: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": pod.name, "namespace": namespace, "annotations": dict(pod.annotations),
                     "labels": {"app": pod.deployment}},
        "status": {"phase": pod.phase},
    }  # fmt: skip
