"""What the serverless providers share: each instance is one asynchronous invocation of a function.

A function platform (AWS Lambda, Alibaba Cloud Function Compute) cannot be asked for an instance,
only to run a function once, in the background. The shipped handler (``serverless/``) turns that
invocation into a node that connects out to the scheduler, serves one queue and exits after
``idle_timeout_s`` without a task. So every such provider, whatever the platform:

- counts the invocations it believes alive against ``max_concurrency`` (``capacity``);
- starts instances one invocation at a time, each with a fresh instance id and the payload that tells
  the handler where the scheduler is, and stops at the first failure, reporting what it had started
  (fallback then moves the rest of the demand to the next provider);
- cannot stop an invocation from outside: ``release`` only forgets it, as the drained node exits by
  itself.

A platform's provider subclasses :class:`FunctionInvocationProvider` and says how one invocation is made
(:meth:`~FunctionInvocationProvider.invoke`) and how its SDK's exceptions read
(:meth:`~FunctionInvocationProvider.classify`); its settings dataclass extends :class:`InvocationSettings`.
A third-party provider for another function platform does the same.
"""

from __future__ import annotations

import threading
import uuid
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..labels import instance_labels
from ..serverless.payload import InstancePayload
from .base import Capacity, LaunchedInstance, ProviderContext, ProviderError, ProviderThrottled, ScalingProvider

ACCEPTED = 202
"""The status every platform answers an accepted asynchronous invocation with."""


@dataclass
class InvocationSettings:
    """The settings every function provider has; a platform's table adds its own (region, endpoint...)
    and may give these other defaults."""

    function: str = field(
        default="lama-cleaner-node",
        metadata={"help": "Function to invoke; `{queue}` is replaced by the queue's name."},
    )
    qualifier: str | None = field(default=None, metadata={"help": "Version or alias to invoke (unset = the latest)."})
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
            "help": "Scheduler endpoint the functions connect to (`tcp://public-host:port`); unset = "
            "`distributed.scheduler_advertise` if set, else the autoscaler's, which is only right if the "
            "functions can reach it."
        },
    )
    idle_timeout_s: float = field(
        default=60.0, metadata={"help": "An instance exits after this long without a task.", "above": 0}
    )
    connect_timeout_s: float = field(default=5.0, metadata={"help": "SDK connect timeout.", "above": 0})
    read_timeout_s: float = field(default=10.0, metadata={"help": "SDK read timeout.", "above": 0})


class FunctionInvocationProvider(ScalingProvider):
    """Instances as asynchronous invocations; a subclass supplies :meth:`invoke` and :meth:`classify`."""

    settings: InvocationSettings

    def __init__(self, settings: InvocationSettings, context: ProviderContext, client: Any) -> None:
        self.settings = settings
        self.context = context
        self._client = client
        self._live: dict[str, LaunchedInstance] = {}
        self._counts = {"invoked": 0, "throttled": 0, "failed": 0}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the platform's part
    @abstractmethod
    def invoke(self, function: str, payload: str, instance_id: str) -> tuple[int, str | None]:
        """Invoke ``function`` once, asynchronously, with the handler's JSON ``payload``; return the
        reply's HTTP status and the platform's request id. ``instance_id`` is unique per call, for a
        platform that takes an idempotency key. Raise the SDK's own exceptions: :meth:`classify`
        reads them."""

    @abstractmethod
    def classify(self, exc: Exception, function: str) -> ProviderError:
        """The typed error for an exception :meth:`invoke` raised: :class:`ProviderThrottled` for "not
        now" (with ``retry_after_s`` where the platform said), ``ProviderTimeout`` for no answer in
        time, :class:`ProviderError` otherwise; the message names ``function`` and the platform's
        reason."""

    def extra_state(self) -> dict[str, Any]:
        """Platform facts ``state`` adds (an endpoint...)."""
        return {}

    # ------------------------------------------------------------------ provider
    def function_for(self, queue: str) -> str:
        return self.settings.function.replace("{queue}", queue)

    def payload_for(self, queue: str, instance_id: str) -> InstancePayload:
        return InstancePayload(
            scheduler=self.settings.scheduler or self.context.advertised or self.context.scheduler,
            queues=(queue,),
            provider=self.name,
            instance_id=instance_id,
            labels=instance_labels(self.name, instance_id),
            idle_timeout_s=self.settings.idle_timeout_s,
        )

    def capacity(self, queue: str) -> Capacity:
        with self._lock:
            return Capacity(self.settings.max_concurrency, len(self._live))

    def start(self, queue: str, count: int) -> list[LaunchedInstance]:
        room = self.capacity(queue).room or 0
        function = self.function_for(queue)
        started: list[LaunchedInstance] = []
        for _ in range(max(0, min(count, room))):
            instance_id = f"{self.name}-{uuid.uuid4().hex[:12]}"
            try:
                status, request_id = self.invoke(function, self.payload_for(queue, instance_id).to_json(), instance_id)
            except Exception as exc:
                raise self._failed(self.classify(exc, function), started) from exc
            if status != ACCEPTED:
                error = ProviderError(f"invoke {function}: expected {ACCEPTED} for an async invocation, got {status}")
                raise self._failed(error, started)
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
                **self.extra_state(),
                "max_concurrency": self.settings.max_concurrency,
                "live": sorted(self._live),
                **self._counts,
            }

    def _failed(self, error: ProviderError, started: list[LaunchedInstance]) -> ProviderError:
        """Count ``error`` and attach the instances started before it (they run, and are tracked)."""
        error.launched = list(started)
        with self._lock:
            self._counts["throttled" if isinstance(error, ProviderThrottled) else "failed"] += 1
        return error
