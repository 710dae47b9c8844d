"""``aliyun-fc``: each instance is one asynchronous invocation of an Alibaba Cloud Function Compute 3.0 function.

``start`` calls ``InvokeFunction`` with ``x-fc-invocation-type: Async`` (answered 202) and our
instance id as ``x-fc-async-task-id`` (FC's idempotency key for the task), with the same payload
as the Lambda provider. FC runs GPU functions in custom containers, so this is the serverless
provider for GPU queues; the handler exits after ``idle_timeout_s`` without a task.

Concurrency rejections (HTTP 429 ``ResourceExhausted``), capacity shortages (HTTP 503
``ResourceThrottled``) and the SDK's ``ThrottlingException`` are throttling; other error replies
and unreachable endpoints are errors; read and connect timeouts are timeouts. The SDK's own retries
are off so that fallback, not a retry loop, decides what happens next.

Credentials come from the environment (``ALIBABA_CLOUD_ACCESS_KEY_ID``,
``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, optionally ``ALIBABA_CLOUD_SECURITY_TOKEN``), never from the
config file.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..labels import instance_labels
from ..serverless.payload import InstancePayload
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

THROTTLE_CODES = frozenset({"ResourceExhausted", "ResourceThrottled", "Throttling", "TooManyRequests"})
THROTTLE_STATUSES = frozenset({429})


@dataclass
class FunctionComputeSettings:
    """``[autoscale.providers.aliyun-fc]``."""

    endpoint: str = field(
        default="",
        metadata={"help": "FC endpoint, `<account-id>.<region>.fc.aliyuncs.com` (required)."},
    )
    function: str = field(
        default="lama-cleaner-node",
        metadata={"help": "Function name to invoke; `{queue}` is replaced by the queue's name."},
    )
    qualifier: str | None = field(default=None, metadata={"help": "Version or alias to invoke (unset = LATEST)."})
    region: str | None = field(default=None, metadata={"help": "Region id, e.g. `cn-hangzhou`."})
    protocol: str = field(default="https", metadata={"help": "`https`, or `http` for a local emulator."})
    max_concurrency: int = field(
        default=4,
        metadata={"help": "Most instances running at once (FC's default cap is 100 per region).", "minimum": 0},
    )
    scheduler: str | None = field(
        default=None,
        metadata={
            "help": "Scheduler endpoint the functions connect to (`tcp://public-host:port`); unset = the "
            "autoscaler's, which is only right if the functions can reach it."
        },
    )
    idle_timeout_s: float = field(
        default=120.0, metadata={"help": "An instance exits after this long without a task.", "above": 0}
    )
    connect_timeout_s: float = field(default=5.0, metadata={"help": "SDK connect timeout.", "above": 0})
    read_timeout_s: float = field(default=10.0, metadata={"help": "SDK read timeout.", "above": 0})


class AliyunFcProvider(ScalingProvider):
    """Asynchronous invocations of a Function Compute 3.0 function running the shipped node handler."""

    name = "aliyun-fc"
    settings_type = FunctionComputeSettings

    def __init__(self, settings: FunctionComputeSettings | None, context: ProviderContext, client: Any = None) -> None:
        self.settings = settings or FunctionComputeSettings()
        if client is None and not self.settings.endpoint:
            from ....config import ConfigError

            raise ConfigError(
                "autoscale.providers.aliyun-fc.endpoint is required (<account-id>.<region>.fc.aliyuncs.com)"
            )
        if self.settings.protocol not in ("https", "http"):
            from ....config import ConfigError

            raise ConfigError(
                f"autoscale.providers.aliyun-fc.protocol must be https or http, got {self.settings.protocol!r}"
            )
        self.context = context
        self._client = client if client is not None else _build_client(self.settings)
        self._live: dict[str, LaunchedInstance] = {}
        self._counts = {"invoked": 0, "throttled": 0, "failed": 0}
        self._lock = threading.Lock()

    def function_for(self, queue: str) -> str:
        return self.settings.function.replace("{queue}", queue)

    def payload_for(self, queue: str, instance_id: str) -> InstancePayload:
        return InstancePayload(
            scheduler=self.settings.scheduler or self.context.scheduler,
            queues=(queue,),
            provider=self.name,
            instance_id=instance_id,
            labels=instance_labels(self.name, instance_id),
            idle_timeout_s=self.settings.idle_timeout_s,
        )

    # ------------------------------------------------------------------ provider
    def capacity(self, queue: str) -> Capacity:
        with self._lock:
            return Capacity(self.settings.max_concurrency, len(self._live))

    def start(self, queue: str, count: int) -> list[LaunchedInstance]:
        from alibabacloud_fc20230330 import models as fc
        from darabonba.runtime import RuntimeOptions

        room = self.capacity(queue).room or 0
        function = self.function_for(queue)
        started: list[LaunchedInstance] = []
        runtime = RuntimeOptions(
            autoretry=False,
            connect_timeout=int(self.settings.connect_timeout_s * 1000),
            read_timeout=int(self.settings.read_timeout_s * 1000),
        )
        for _ in range(max(0, min(count, room))):
            instance_id = f"{self.name}-{uuid.uuid4().hex[:12]}"
            request = fc.InvokeFunctionRequest(
                body=self.payload_for(queue, instance_id).to_json(), qualifier=self.settings.qualifier
            )
            headers = fc.InvokeFunctionHeaders(x_fc_invocation_type="Async", x_fc_async_task_id=instance_id)
            try:
                reply = self._client.invoke_function_with_options(function, request, headers, runtime)
            except Exception as exc:
                raise self._translate(exc, function, started) from exc
            if reply.status_code != 202:
                raise ProviderError(
                    f"invoke {function}: expected 202 for an async invocation, got {reply.status_code}",
                    launched=started,
                )
            request_id = (reply.headers or {}).get("x-fc-request-id")
            inst = LaunchedInstance(self.name, queue, instance_id, {"function": function, "request_id": request_id})
            with self._lock:
                self._live[instance_id] = inst
                self._counts["invoked"] += 1
            started.append(inst)
        return started

    def release(self, instances: Sequence[LaunchedInstance]) -> None:
        self.forget(instances)  # the drained node exits by itself when its task is done

    def forget(self, instances: Sequence[LaunchedInstance]) -> None:
        with self._lock:
            for inst in instances:
                self._live.pop(inst.instance_id or "", None)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "function": self.settings.function,
                "endpoint": self.settings.endpoint,
                "max_concurrency": self.settings.max_concurrency,
                "live": sorted(self._live),
                **self._counts,
            }

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: Exception, function: str, started: list[LaunchedInstance]) -> ProviderError:
        import requests
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException

        with self._lock:
            if isinstance(exc, AlibabaCloudException):
                status = getattr(exc, "status_code", None)
                code = str(getattr(exc, "code", "") or "")
                reason = f"invoke {function}: HTTP {status} {code}".rstrip()
                data = getattr(exc, "data", None)
                message = data.get("Message") or data.get("message") if isinstance(data, dict) else None
                if message:
                    reason += f": {message}"
                if isinstance(exc, ThrottlingException) or code in THROTTLE_CODES or status in THROTTLE_STATUSES:
                    self._counts["throttled"] += 1
                    retry_after = getattr(exc, "retry_after", None)
                    seconds = float(retry_after) / 1000.0 if isinstance(retry_after, (int, float)) else None
                    return ProviderThrottled(reason, launched=started, retry_after_s=seconds)
                self._counts["failed"] += 1
                return ProviderError(reason, launched=started)
            self._counts["failed"] += 1
            inner = getattr(exc, "inner_exception", None) or exc
            text = str(getattr(inner, "message", None) or inner)
            # the SDK wraps transport errors (UnretryableException around requests' exception, or a
            # RetryError carrying only its message): a timeout is recognised by type, else by that message
            if isinstance(inner, requests.exceptions.Timeout) or "timed out" in text.lower():
                return ProviderTimeout(f"invoke {function}: timed out ({text})", launched=started)
            return ProviderError(f"invoke {function}: {type(inner).__name__}: {text}", launched=started)


def _build_client(settings: FunctionComputeSettings) -> Any:
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as openapi

    config = openapi.Config(
        access_key_id=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        access_key_secret=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        security_token=os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None,
        endpoint=settings.endpoint,
        region_id=settings.region,
        protocol=settings.protocol,
        connect_timeout=int(settings.connect_timeout_s * 1000),
        read_timeout=int(settings.read_timeout_s * 1000),
    )
    return Client(config)
