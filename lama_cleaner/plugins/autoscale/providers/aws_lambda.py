"""``aws-lambda``: each instance is one asynchronous invocation of a function running the shipped handler.

``start`` invokes the function ``count`` times with ``InvocationType="Event"`` (answered 202 at once)
and a payload that tells the handler where the scheduler is, which queue to serve and which
labels to advertise (``serverless/payload.py``). The handler runs a node that connects out to the
scheduler, works, and exits after ``idle_timeout_s`` without a task, before the 15-minute limit.

Nothing can stop a running invocation from outside, so :meth:`release` only forgets it: a drained
node exits by itself (the handler runs it with ``--exit-on-drain``). Throttling
(``TooManyRequestsException``, HTTP 429, with ``Retry-After``) and the SDK's timeouts become the
provider errors fallback understands; botocore's own retries are off, so a throttle surfaces at
once and capacity moves to the next provider instead of waiting in a retry loop.

Lambda has no GPU: use it for CPU queues (small LaMa or OpenCV jobs) or as an overflow for them.
"""

from __future__ import annotations

import logging
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

THROTTLE_CODES = frozenset({"TooManyRequestsException", "EC2ThrottledException", "ThrottlingException"})


@dataclass
class LambdaSettings:
    """``[autoscale.providers.aws-lambda]``."""

    function: str = field(
        default="lama-cleaner-node",
        metadata={"help": "Function name or ARN to invoke; `{queue}` is replaced by the queue's name."},
    )
    qualifier: str | None = field(default=None, metadata={"help": "Version or alias to invoke (unset = $LATEST)."})
    region: str | None = field(default=None, metadata={"help": "AWS region (unset = the SDK's default chain)."})
    endpoint_url: str | None = field(
        default=None, metadata={"help": "A Lambda-compatible endpoint instead of AWS's (an emulator, a VPC endpoint)."}
    )
    max_concurrency: int = field(
        default=10,
        metadata={
            "help": "Most instances running at once; keep it at or below the function's reserved concurrency.",
            "minimum": 0,
        },
    )
    scheduler: str | None = field(
        default=None,
        metadata={
            "help": "Scheduler endpoint the functions connect to (`tcp://public-host:port`); unset = the "
            "autoscaler's, which is only right if the functions can reach it."
        },
    )
    idle_timeout_s: float = field(
        default=60.0, metadata={"help": "An instance exits after this long without a task.", "above": 0}
    )
    connect_timeout_s: float = field(default=5.0, metadata={"help": "SDK connect timeout.", "above": 0})
    read_timeout_s: float = field(default=10.0, metadata={"help": "SDK read timeout.", "above": 0})


class AwsLambdaProvider(ScalingProvider):
    """Asynchronous invocations of a function that runs the shipped node handler."""

    name = "aws-lambda"
    settings_type = LambdaSettings

    def __init__(self, settings: LambdaSettings | None, context: ProviderContext, client: Any = None) -> None:
        self.settings = settings or LambdaSettings()
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
        room = self.capacity(queue).room or 0
        started: list[LaunchedInstance] = []
        function = self.function_for(queue)
        for _ in range(max(0, min(count, room))):
            instance_id = f"{self.name}-{uuid.uuid4().hex[:12]}"
            kwargs: dict[str, Any] = {
                "FunctionName": function,
                "InvocationType": "Event",
                "Payload": self.payload_for(queue, instance_id).to_json(),
            }
            if self.settings.qualifier:
                kwargs["Qualifier"] = self.settings.qualifier
            try:
                reply = self._client.invoke(**kwargs)
            except Exception as exc:
                raise self._translate(exc, function, started) from exc
            status = int(reply.get("StatusCode", 0))
            if status != 202:
                raise ProviderError(
                    f"invoke {function}: expected 202 for an async invocation, got {status}", launched=started
                )
            request_id = (reply.get("ResponseMetadata") or {}).get("RequestId")
            inst = LaunchedInstance(self.name, queue, instance_id, {"function": function, "request_id": request_id})
            with self._lock:
                self._live[instance_id] = inst
                self._counts["invoked"] += 1
            started.append(inst)
        return started

    def release(self, instances: Sequence[LaunchedInstance]) -> None:
        self.forget(instances)  # the drained node exits by itself; an invocation cannot be stopped from outside

    def forget(self, instances: Sequence[LaunchedInstance]) -> None:
        with self._lock:
            for inst in instances:
                self._live.pop(inst.instance_id or "", None)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "function": self.settings.function,
                "max_concurrency": self.settings.max_concurrency,
                "live": sorted(self._live),
                **self._counts,
            }

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: Exception, function: str, started: list[LaunchedInstance]) -> ProviderError:
        from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

        with self._lock:
            if isinstance(exc, ClientError):
                error = exc.response.get("Error") or {}
                code = str(error.get("Code", ""))
                message = error.get("Message") or exc.response.get("message") or ""
                reason = f"invoke {function}: {code}: {message}".rstrip(": ")
                if code in THROTTLE_CODES:
                    self._counts["throttled"] += 1
                    detail = exc.response.get("Reason")
                    retry_after = _seconds(exc.response.get("retryAfterSeconds"))
                    return ProviderThrottled(
                        reason + (f" ({detail})" if detail else ""), launched=started, retry_after_s=retry_after
                    )
                self._counts["failed"] += 1
                return ProviderError(reason, launched=started)
            self._counts["failed"] += 1
            if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
                return ProviderTimeout(f"invoke {function}: {exc}", launched=started)
            return ProviderError(f"invoke {function}: {type(exc).__name__}: {exc}", launched=started)


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _build_client(settings: LambdaSettings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},  # no hidden retries: fallback decides
    )
    return boto3.session.Session().client(
        "lambda", region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )
