"""``aliyun-fc``: each instance is one asynchronous invocation of an Alibaba Cloud Function Compute 3.0 function.

``start`` calls ``InvokeFunction`` with ``x-fc-invocation-type: Async`` (answered 202) and our
instance id as ``x-fc-async-task-id`` (FC's idempotency key for the task), with the same payload
as the Lambda provider. FC runs GPU functions in custom containers, so this is the serverless
provider for GPU queues; the handler exits after ``idle_timeout_s`` without a task. Capacity,
bookkeeping and the start loop are every function platform's (``function_invocation.py``); this module
is FC's call and how its errors read.

Concurrency rejections (HTTP 429 ``ResourceExhausted``), capacity shortages (HTTP 503
``ResourceThrottled``) and the SDK's ``ThrottlingException`` are throttling; other error replies
and unreachable endpoints are errors; read and connect timeouts are timeouts. The SDK's own retries
are off so that fallback, not a retry loop, decides what happens next.

Credentials come from the environment (``ALIBABA_CLOUD_ACCESS_KEY_ID``,
``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, optionally ``ALIBABA_CLOUD_SECURITY_TOKEN``), never from the
config file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .base import ProviderContext, ProviderError, ProviderThrottled, ProviderTimeout
from .function_invocation import FunctionInvocationProvider, InvocationSettings

THROTTLE_CODES = frozenset({"ResourceExhausted", "ResourceThrottled", "Throttling", "TooManyRequests"})
THROTTLE_STATUSES = frozenset({429})


@dataclass
class FunctionComputeSettings(InvocationSettings):
    """``[autoscale.providers.aliyun-fc]``: the common settings, two with other defaults, and:"""

    max_concurrency: int = field(
        default=4,
        metadata={"help": "Most instances running at once (FC's default cap is 100 per region).", "minimum": 0},
    )
    idle_timeout_s: float = field(
        default=120.0, metadata={"help": "An instance exits after this long without a task.", "above": 0}
    )
    endpoint: str = field(
        default="",
        metadata={"help": "FC endpoint, `<account-id>.<region>.fc.aliyuncs.com` (required)."},
    )
    region: str | None = field(default=None, metadata={"help": "Region id, e.g. `cn-hangzhou`."})
    protocol: str = field(default="https", metadata={"help": "`https`, or `http` for a local emulator."})


class AliyunFcProvider(FunctionInvocationProvider):
    """Asynchronous invocations of a Function Compute 3.0 function running the shipped node handler."""

    name = "aliyun-fc"
    settings_type = FunctionComputeSettings
    settings: FunctionComputeSettings

    def __init__(self, settings: FunctionComputeSettings | None, context: ProviderContext, client: Any = None) -> None:
        settings = settings or FunctionComputeSettings()
        if client is None and not settings.endpoint:
            from ....config import ConfigError

            raise ConfigError(
                "autoscale.providers.aliyun-fc.endpoint is required (<account-id>.<region>.fc.aliyuncs.com)"
            )
        if settings.protocol not in ("https", "http"):
            from ....config import ConfigError

            raise ConfigError(
                f"autoscale.providers.aliyun-fc.protocol must be https or http, got {settings.protocol!r}"
            )
        super().__init__(settings, context, client if client is not None else _build_client(settings))

    def invoke(self, function: str, payload: str, instance_id: str) -> tuple[int, str | None]:
        from alibabacloud_fc20230330 import models as fc
        from darabonba.runtime import RuntimeOptions

        runtime = RuntimeOptions(
            autoretry=False,
            connect_timeout=int(self.settings.connect_timeout_s * 1000),
            read_timeout=int(self.settings.read_timeout_s * 1000),
        )
        request = fc.InvokeFunctionRequest(body=payload, qualifier=self.settings.qualifier)
        # our instance id doubles as FC's idempotency key for the async task
        headers = fc.InvokeFunctionHeaders(x_fc_invocation_type="Async", x_fc_async_task_id=instance_id)
        reply = self._client.invoke_function_with_options(function, request, headers, runtime)
        return reply.status_code, (reply.headers or {}).get("x-fc-request-id")

    def classify(self, exc: Exception, function: str) -> ProviderError:
        import requests
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException

        if isinstance(exc, AlibabaCloudException):
            status = getattr(exc, "status_code", None)
            code = str(getattr(exc, "code", "") or "")
            reason = f"invoke {function}: HTTP {status} {code}".rstrip()
            data = getattr(exc, "data", None)
            message = data.get("Message") or data.get("message") if isinstance(data, dict) else None
            if message:
                reason += f": {message}"
            if isinstance(exc, ThrottlingException) or code in THROTTLE_CODES or status in THROTTLE_STATUSES:
                retry_after = getattr(exc, "retry_after", None)
                seconds = float(retry_after) / 1000.0 if isinstance(retry_after, (int, float)) else None
                return ProviderThrottled(reason, retry_after_s=seconds)
            return ProviderError(reason)
        inner = getattr(exc, "inner_exception", None) or exc
        text = str(getattr(inner, "message", None) or inner)
        # the SDK wraps transport errors (UnretryableException around requests' exception, or a
        # RetryError carrying only its message): a timeout is recognised by type, else by that message
        if isinstance(inner, requests.exceptions.Timeout) or "timed out" in text.lower():
            return ProviderTimeout(f"invoke {function}: timed out ({text})")
        return ProviderError(f"invoke {function}: {type(inner).__name__}: {text}")

    def extra_state(self) -> dict[str, Any]:
        return {"endpoint": self.settings.endpoint}


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
