"""``kubernetes``: scale a node Deployment per queue, and remove exactly the drained pods on scale-in.

Scale-out raises ``spec.replicas`` through the Deployment's ``scale`` subresource; the ReplicaSet
creates the pods, which name themselves (each pod passes its own name as its ``autoscale.instance``
label through the downward API, see ``docs/scaling.md``), so a launch is matched to the first new
pod of the Deployment that registers.

Scale-in never lets the ReplicaSet pick a victim at random (the busy-pod problem of HPA-driven
scaling). The autoscaler first drains the chosen nodes; once they hold no task, :meth:`release`
marks exactly their pods with the lowest ``controller.kubernetes.io/pod-deletion-cost`` and only
then lowers ``replicas`` by their number, so the ReplicaSet deletes those pods. Nodes in this
Deployment run *without* ``--exit-on-drain``: a drained node stays up, idle and taking no work,
until its pod is deleted (a container that exited would be restarted by the kubelet as a fresh,
undrained node).

Every replica change is a read-modify-write carrying the Scale's ``resourceVersion``, so a
concurrent writer makes it fail with 409 and it is re-read and retried, never applied on stale
data. Do not attach a HorizontalPodAutoscaler to the same Deployment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import (
    Capacity,
    LaunchedInstance,
    ProviderContext,
    ProviderError,
    ProviderThrottled,
    ProviderTimeout,
    ScalingProvider,
)

log = logging.getLogger(__name__)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
LOWEST_COST = str(-(2**31))
"""The smallest int32: a drained pod goes before any other, whatever costs operators set."""
_CONFLICT_RETRIES = 3


@dataclass
class KubernetesSettings:
    """``[autoscale.providers.kubernetes]``."""

    namespace: str = field(default="default", metadata={"help": "Namespace of the node Deployments."})
    deployment: str = field(
        default="lama-cleaner-node-{queue}",
        metadata={
            "help": "Name of the Deployment whose pods serve a queue; `{queue}` is replaced by the queue's name."
        },
    )
    max_replicas: int = field(
        default=4, metadata={"help": "Most replicas the provider sets on one Deployment.", "minimum": 0}
    )
    host: str | None = field(
        default=None,
        metadata={"help": "API server URL; unset = in-cluster config when running in a pod, else the kubeconfig."},
    )
    kubeconfig: str | None = field(default=None, metadata={"help": "Kubeconfig file (unset = the default one)."})
    context: str | None = field(default=None, metadata={"help": "Kubeconfig context (unset = the current one)."})
    token_file: str | None = field(
        default=None, metadata={"help": "Bearer token file used with `host` (e.g. a service account token)."}
    )
    verify_ssl: bool = field(default=True, metadata={"help": "Verify the API server's certificate when `host` is set."})
    request_timeout_s: float = field(default=10.0, metadata={"help": "Timeout of each API request.", "above": 0})


class KubernetesProvider(ScalingProvider):
    """Scales one Deployment per queue through the official ``kubernetes`` client."""

    name = "kubernetes"
    settings_type = KubernetesSettings

    def __init__(self, settings: KubernetesSettings | None, context: ProviderContext, api_client: Any = None) -> None:
        from kubernetes import client

        self.settings = settings or KubernetesSettings()
        self.context = context
        self._api_client = api_client or _build_api_client(self.settings)
        self._apps = client.AppsV1Api(self._api_client)
        self._core = client.CoreV1Api(self._api_client)
        self._seen: dict[str, dict[str, Any]] = {}

    def deployment_for(self, queue: str) -> str:
        return self.settings.deployment.replace("{queue}", queue)

    # ------------------------------------------------------------------ provider
    def capacity(self, queue: str) -> Capacity:
        replicas, _ = self._read_scale(self.deployment_for(queue))
        return Capacity(self.settings.max_replicas, replicas)

    def start(self, queue: str, count: int) -> list[LaunchedInstance]:
        name = self.deployment_for(queue)
        before, after = self._change_replicas(name, lambda n: min(self.settings.max_replicas, n + count))
        added = max(0, after - before)
        log.info("deployment %s scaled %d -> %d for queue %s", name, before, after, queue)
        return [LaunchedInstance(self.name, queue, None, {"deployment": name}) for _ in range(added)]

    def release(self, instances: Sequence[LaunchedInstance]) -> None:
        by_deployment: dict[str, list[str]] = {}
        for inst in instances:
            if inst.instance_id:
                by_deployment.setdefault(self.deployment_for(inst.queue), []).append(inst.instance_id)
        for name, pods in by_deployment.items():
            present = [pod for pod in pods if self._mark_for_deletion(pod)]
            gone = len(pods) - len(present)
            if gone:
                log.info("%d drained pod(s) of %s are already gone; lowering replicas anyway", gone, name)
            before, after = self._change_replicas(name, lambda n, k=len(pods): max(0, n - k))
            log.info("deployment %s scaled %d -> %d, removing drained pods %s", name, before, after, ", ".join(pods))

    def state(self) -> dict[str, Any]:
        return {
            "namespace": self.settings.namespace,
            "max_replicas": self.settings.max_replicas,
            "deployments": {name: dict(seen) for name, seen in self._seen.items()},
        }

    def close(self) -> None:
        self._api_client.close()

    # ------------------------------------------------------------------ API calls
    def _read_scale(self, name: str) -> tuple[int, Any]:
        try:
            scale = self._apps.read_namespaced_deployment_scale(
                name, self.settings.namespace, _request_timeout=self.settings.request_timeout_s
            )
        except Exception as exc:
            raise _translate(exc, f"read the scale of deployment {self.settings.namespace}/{name}") from exc
        replicas = int(scale.spec.replicas or 0) if scale.spec is not None else 0
        self._seen[name] = {"replicas": replicas, "ready": int(getattr(scale.status, "replicas", 0) or 0)}
        return replicas, scale

    def _change_replicas(self, name: str, new_count: Any) -> tuple[int, int]:
        """Set ``replicas`` to ``new_count(current)`` with optimistic concurrency; returns (before, after)."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(_CONFLICT_RETRIES):
            before, scale = self._read_scale(name)
            after = int(new_count(before))
            if after == before:
                return before, after
            body = {"metadata": {"resourceVersion": scale.metadata.resource_version}, "spec": {"replicas": after}}
            try:
                self._apps.patch_namespaced_deployment_scale(
                    name, self.settings.namespace, body, _request_timeout=self.settings.request_timeout_s
                )
            except ApiException as exc:
                if exc.status == 409 and attempt + 1 < _CONFLICT_RETRIES:
                    continue  # someone else changed it: read again
                raise _translate(exc, f"scale deployment {self.settings.namespace}/{name}") from exc
            except Exception as exc:
                raise _translate(exc, f"scale deployment {self.settings.namespace}/{name}") from exc
            self._seen[name] = {**self._seen.get(name, {}), "replicas": after}
            return before, after
        raise ProviderError(f"deployment {self.settings.namespace}/{name} kept changing under us")  # pragma: no cover

    def _mark_for_deletion(self, pod: str) -> bool:
        """Give ``pod`` the lowest deletion cost; False when it no longer exists."""
        from kubernetes.client.exceptions import ApiException

        body = {"metadata": {"annotations": {DELETION_COST: LOWEST_COST}}}
        try:
            self._core.patch_namespaced_pod(
                pod, self.settings.namespace, body, _request_timeout=self.settings.request_timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _translate(exc, f"annotate pod {self.settings.namespace}/{pod}") from exc
        except Exception as exc:
            raise _translate(exc, f"annotate pod {self.settings.namespace}/{pod}") from exc
        return True


def _translate(exc: Exception, doing: str) -> ProviderError:
    """The client's exceptions as the provider errors fallback understands."""
    import urllib3.exceptions
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        reason = f"cannot {doing}: HTTP {exc.status} {exc.reason or ''}".rstrip()
        if exc.status == 429:
            retry_after = None
            headers = exc.headers or {}
            try:
                retry_after = float(headers.get("Retry-After")) if headers.get("Retry-After") else None
            except (TypeError, ValueError):
                retry_after = None
            return ProviderThrottled(reason, retry_after_s=retry_after)
        return ProviderError(reason)
    if isinstance(exc, (urllib3.exceptions.TimeoutError, urllib3.exceptions.MaxRetryError)):
        inner = getattr(exc, "reason", None)
        if isinstance(exc, urllib3.exceptions.TimeoutError) or isinstance(inner, urllib3.exceptions.TimeoutError):
            return ProviderTimeout(f"cannot {doing}: timed out")
        return ProviderError(f"cannot {doing}: {inner or exc}")
    return ProviderError(f"cannot {doing}: {type(exc).__name__}: {exc}")


def _build_api_client(settings: KubernetesSettings) -> Any:
    """An ``ApiClient`` from ``host`` (+ token), the in-cluster service account, or the kubeconfig."""
    from kubernetes import client, config

    if settings.host:
        configuration = client.Configuration(host=settings.host)
        configuration.verify_ssl = settings.verify_ssl
        if settings.token_file:
            with open(settings.token_file, encoding="utf-8") as f:
                configuration.api_key = {"BearerToken": f.read().strip()}
                configuration.api_key_prefix = {"BearerToken": "Bearer"}
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    else:
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=settings.kubeconfig, context=settings.context, client_configuration=configuration
        )
    configuration.retries = 0  # fail fast: fallback decides what to do next, not a retry loop in the client
    return client.ApiClient(configuration)
