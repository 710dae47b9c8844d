"""``aws-lambda``: each instance is one asynchronous invocation of a function running the shipped handler.

``start`` invokes the function ``count`` times with ``InvocationType="Event"`` (answered 202 at once)
and a payload that tells the handler where the scheduler is, which queue to serve and which
labels to advertise (``serverless/payload.py``). The handler runs a node that connects out to the
scheduler, works, and exits after ``idle_timeout_s`` without a task, before the 15-minute limit.

Nothing can stop a running invocation from outside, so ``release`` only forgets it: a drained
node exits by itself (the handler runs it with ``--exit-on-drain``). That, the capacity count and the
start loop are every function platform's (``function_invocation.py``); this module is Lambda's call
and how its errors read. Throttling (``TooManyRequestsException``, HTTP 429, with ``Retry-After``)
and the SDK's timeouts become the provider errors fallback understands; botocore's own retries are
off, so a throttle surfaces at once and capacity moves to the next provider instead of waiting in a
retry loop.

Lambda has no GPU: use it for CPU queues (small LaMa or OpenCV jobs) or as an overflow for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import ProviderContext, ProviderError, ProviderThrottled, ProviderTimeout
from .function_invocation import FunctionInvocationProvider, InvocationSettings

THROTTLE_CODES = frozenset({"TooManyRequestsException", "EC2ThrottledException", "ThrottlingException"})


@dataclass
class LambdaSettings(InvocationSettings):
    """``[autoscale.providers.aws-lambda]``: the common settings (``function`` may be an ARN) and:"""

    region: str | None = field(default=None, metadata={"help": "AWS region (unset = the SDK's default chain)."})
    endpoint_url: str | None = field(
        default=None, metadata={"help": "A Lambda-compatible endpoint instead of AWS's (an emulator, a VPC endpoint)."}
    )


class AwsLambdaProvider(FunctionInvocationProvider):
    """Asynchronous invocations of a function that runs the shipped node handler."""

    name = "aws-lambda"
    settings_type = LambdaSettings

    def __init__(self, settings: LambdaSettings | None, context: ProviderContext, client: Any = None) -> None:
        settings = settings or LambdaSettings()
        super().__init__(settings, context, client if client is not None else _build_client(settings))

    def invoke(self, function: str, payload: str, instance_id: str) -> tuple[int, str | None]:
        kwargs: dict[str, Any] = {"FunctionName": function, "InvocationType": "Event", "Payload": payload}
        if self.settings.qualifier:
            kwargs["Qualifier"] = self.settings.qualifier
        reply = self._client.invoke(**kwargs)
        return int(reply.get("StatusCode", 0)), (reply.get("ResponseMetadata") or {}).get("RequestId")

    def classify(self, exc: Exception, function: str) -> ProviderError:
        from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error") or {}
            code = str(error.get("Code", ""))
            message = error.get("Message") or exc.response.get("message") or ""
            reason = f"invoke {function}: {code}: {message}".rstrip(": ")
            if code in THROTTLE_CODES:
                detail = exc.response.get("Reason")
                retry_after = _seconds(exc.response.get("retryAfterSeconds"))
                return ProviderThrottled(reason + (f" ({detail})" if detail else ""), retry_after_s=retry_after)
            return ProviderError(reason)
        if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
            return ProviderTimeout(f"invoke {function}: {exc}")
        return ProviderError(f"invoke {function}: {type(exc).__name__}: {exc}")


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
