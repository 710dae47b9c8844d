"""The interface every scaling provider implements, and the errors it signals.

A provider turns "one more node for queue Q" into something running somewhere: a local process, a
pod, a function invocation. It does not decide anything (the policy does) and it never picks which
node leaves (the autoscaler drains exactly the nodes it chose, then asks the provider to release
exactly those instances).

Providers are registered through the plugin's ``register_scaling_providers`` hook as classes; the
autoscaler builds the ones the configuration names with :meth:`ScalingProvider.from_config`.

Errors are typed so fallback can tell them apart: :class:`ProviderThrottled` (the platform said
"not now", possibly with a retry-after), :class:`ProviderTimeout` (no answer in time) and
:class:`ProviderError` (anything else: refused, misconfigured, down). Each may carry the instances
started before the failure, so a partly successful request is still tracked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ....config import ConfigError
from ..config import check_bounds, settings_from_mapping


@dataclass(frozen=True)
class LaunchedInstance:
    """One instance a provider started for ``queue``.

    ``instance_id`` is what the node will advertise as its ``autoscale.instance`` label. It is None
    when the platform names the instance itself (a pod created by a ReplicaSet): such a launch is
    matched to the first node of this provider that registers with an id not seen before.
    """

    provider: str
    queue: str
    instance_id: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific facts for the API and the logs (pid, request id, pod name...)."""


@dataclass(frozen=True)
class Capacity:
    """How many instances a provider may run for a queue, and how many it runs now."""

    limit: int | None
    """None: no limit the provider knows of (the queue's ``max_nodes`` still applies)."""
    in_use: int = 0

    @property
    def room(self) -> int | None:
        """Instances it can still start (None: no known limit)."""
        return None if self.limit is None else max(0, self.limit - self.in_use)


class ProviderError(Exception):
    """A provider could not do what it was asked (refused, misconfigured, unreachable)."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        launched: Sequence[LaunchedInstance] = (),
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.launched = list(launched)
        """Instances started before the failure (they run, and are tracked like any other)."""
        self.retry_after_s = retry_after_s
        """How long the platform asked us to wait, if it said."""


class ProviderThrottled(ProviderError):
    """The platform is rate-limiting or out of concurrency (HTTP 429, ``TooManyRequestsException``...)."""

    kind = "throttled"


class ProviderTimeout(ProviderError):
    """The platform did not answer in time (connect or read timeout)."""

    kind = "timeout"


@dataclass(frozen=True)
class ProviderContext:
    """What the autoscale plugin tells every provider it builds."""

    scheduler: str
    """The control endpoint nodes started on this machine connect to (``tcp://host:port``)."""
    advertised: str | None = None
    """The scheduler's address as seen from outside its network (``distributed.scheduler_advertise``):
    where instances that run elsewhere (a function platform) connect, when set."""
    config_path: str | None = None
    """A config file with the server's effective settings, for nodes started on this machine."""
    plugins: tuple[str, ...] = ()
    """Plugins a node should load (their models and image plugins), ``distributed`` excluded."""
    clock: Callable[[], float] | None = None
    """The autoscaler's clock (monotonic seconds); providers that keep times use it."""
    host_nodes: int = 0
    """Nodes the server itself keeps on this machine (``distributed.local_nodes``), sharing its cores."""


class ScalingProvider(ABC):
    """Starts and releases node instances on one platform."""

    name: ClassVar[str]
    """The name queues list in ``providers`` and the ``[autoscale.providers.<name>]`` table."""
    settings_type: ClassVar[type | None] = None
    """The dataclass of the provider's settings table (None: it takes none)."""

    @classmethod
    def from_config(cls, table: Mapping[str, Any], context: ProviderContext) -> ScalingProvider:
        """Build the provider from its settings table (raises ConfigError naming a bad key)."""
        where = f"autoscale.providers.{cls.name}."
        settings: Any = None
        if cls.settings_type is not None:
            settings = settings_from_mapping(cls.settings_type, table, where)
            check_bounds(settings, where)
        elif table:
            raise ConfigError(f"{where.rstrip('.')}: the {cls.name} provider takes no settings")
        return cls(settings, context)  # type: ignore[call-arg]

    @abstractmethod
    def capacity(self, queue: str) -> Capacity:
        """How many instances it may run for ``queue`` and runs now (may ask the platform)."""

    @abstractmethod
    def start(self, queue: str, count: int) -> list[LaunchedInstance]:
        """Start up to ``count`` instances serving ``queue``; return those started.

        Returning fewer than asked is fine (at capacity). Raise a :class:`ProviderError` subclass
        on failure, with ``launched`` holding any instances started before it.
        """

    @abstractmethod
    def release(self, instances: Sequence[LaunchedInstance]) -> None:
        """Free exactly these instances. Called only once their nodes have been drained (they hold
        no task) or have left; never to pick a victim."""

    def forget(self, instances: Sequence[LaunchedInstance]) -> None:
        """These instances ended on their own (exited when idle, vanished, never registered): drop
        what the provider keeps about them. Nothing to free on the platform by default."""
        return None

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What ``GET /api/v1/autoscale`` shows about this provider (JSON-able)."""

    def close(self) -> None:
        """Stop what the provider itself runs (threads, clients) at shutdown; instances are left as they are
        unless the provider owns their lifetime (local processes)."""
        return None
