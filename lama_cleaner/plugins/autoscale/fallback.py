"""Provider health and fallback: capacity goes to the first healthy provider with room, in the queue's order.

A provider that errors, throttles or times out is marked **degraded** with the reason, and is not
asked again until its retry time: ``retry_min_s``, doubling with each further failure up to
``retry_max_s`` (or later, when the platform said how long to wait). Meanwhile capacity is asked
of the next provider in the queue's list (typically ending with ``local``). Once its retry time has
passed, a degraded provider is first in line again; the next start that succeeds marks it
**recovered**, so new capacity returns to it; one that fails degrades it again for longer.

:class:`ProviderHealth` is a pure state machine over an injected time; :func:`start_with_fallback`
is the loop that walks the list and calls the providers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .providers.base import LaunchedInstance, ProviderError, ScalingProvider

log = logging.getLogger(__name__)

HEALTHY = "healthy"
DEGRADED = "degraded"

DEGRADED_EVENT = "degraded"
RECOVERED_EVENT = "recovered"
ERROR_EVENT = "error"
"""An error counted against a provider without degrading it (an instance vanished)."""


@dataclass(frozen=True)
class ProviderEvent:
    """Something that happened to a provider, for the log, the plugin hook and the API."""

    kind: str
    provider: str
    reason: str
    at: float
    retry_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthRecord:
    """One provider's health."""

    status: str = HEALTHY
    reason: str = ""
    since: float | None = None
    """When it became degraded."""
    retry_at: float | None = None
    failures: int = 0
    """Consecutive failures (the backoff exponent); reset by a success."""
    errors: int = 0
    """Every error counted against it, ever (failed starts, abnormal instances)."""
    by_kind: dict[str, int] = field(default_factory=dict)


class ProviderHealth:
    """Healthy/degraded per provider, with exponential backoff before a degraded one is retried."""

    def __init__(self, retry_min_s: float, retry_max_s: float) -> None:
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._records: dict[str, HealthRecord] = {}

    def record(self, name: str) -> HealthRecord:
        return self._records.setdefault(name, HealthRecord())

    def usable(self, name: str, now: float) -> bool:
        """Healthy, or degraded with its retry time passed (the next attempt is its probe)."""
        rec = self.record(name)
        return rec.status == HEALTHY or (rec.retry_at is not None and now >= rec.retry_at)

    def failed(
        self, name: str, now: float, reason: str, *, kind: str = "error", retry_after_s: float | None = None
    ) -> ProviderEvent:
        """A start (or a capacity query, or an instance that never registered) failed: degrade and back off."""
        rec = self.record(name)
        rec.failures += 1
        rec.errors += 1
        rec.by_kind[kind] = rec.by_kind.get(kind, 0) + 1
        delay = min(self.retry_max_s, self.retry_min_s * 2.0 ** min(rec.failures - 1, 30))
        if retry_after_s is not None and retry_after_s > delay:
            delay = min(retry_after_s, self.retry_max_s * 4)  # trust the platform, within reason
        if rec.status != DEGRADED:
            rec.since = now
        rec.status = DEGRADED
        rec.reason = reason
        rec.retry_at = now + delay
        return ProviderEvent(DEGRADED_EVENT, name, reason, now, rec.retry_at)

    def succeeded(self, name: str, now: float) -> ProviderEvent | None:
        """A start worked: a degraded provider has recovered (the event says so); backoff resets."""
        rec = self.record(name)
        rec.failures = 0
        if rec.status != DEGRADED:
            return None
        degraded_for = now - rec.since if rec.since is not None else 0.0
        reason = f"recovered after {degraded_for:.0f} s degraded ({rec.reason})"
        rec.status, rec.reason, rec.since, rec.retry_at = HEALTHY, "", None, None
        return ProviderEvent(RECOVERED_EVENT, name, reason, now)

    def count_error(self, name: str, now: float, reason: str, *, kind: str = "error") -> ProviderEvent:
        """An error against the provider that does not degrade it (an instance vanished without goodbye)."""
        rec = self.record(name)
        rec.errors += 1
        rec.by_kind[kind] = rec.by_kind.get(kind, 0) + 1
        return ProviderEvent(ERROR_EVENT, name, reason, now)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(rec) for name, rec in self._records.items()}


@dataclass
class StartResult:
    """What one fallback walk started, where, and what went wrong on the way."""

    launched: list[LaunchedInstance] = field(default_factory=list)
    per_provider: dict[str, int] = field(default_factory=dict)
    events: list[ProviderEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    shortfall: int = 0


def start_with_fallback(
    queue: str,
    count: int,
    providers: Sequence[ScalingProvider],
    health: ProviderHealth,
    now: float,
) -> StartResult:
    """Start ``count`` instances for ``queue``, walking ``providers`` (the queue's order) past the
    degraded and the full ones; whatever no provider could start is the ``shortfall``."""
    result = StartResult()
    remaining = count
    for provider in providers:
        if remaining <= 0:
            break
        name = provider.name
        if not health.usable(name, now):
            continue
        launched: list[LaunchedInstance] = []
        try:
            room = provider.capacity(queue).room
            asked = remaining if room is None else min(remaining, room)
            if asked <= 0:
                continue
            launched = list(provider.start(queue, asked))
        except ProviderError as exc:
            launched = list(exc.launched)
            reason = f"{exc.kind}: {exc}"
            result.errors.append(f"{name}: {reason}")
            result.events.append(health.failed(name, now, reason, kind=exc.kind, retry_after_s=exc.retry_after_s))
        except Exception as exc:  # noqa: BLE001 - a provider bug must not stop the fallback walk
            log.exception("scaling provider %s failed unexpectedly", name)
            reason = f"error: {type(exc).__name__}: {exc}"
            result.errors.append(f"{name}: {reason}")
            result.events.append(health.failed(name, now, reason))
        else:
            recovered = health.succeeded(name, now)
            if recovered is not None:
                result.events.append(recovered)
        if launched:
            result.launched += launched
            result.per_provider[name] = result.per_provider.get(name, 0) + len(launched)
            remaining -= len(launched)
    result.shortfall = max(0, remaining)
    return result


def headroom(
    queue: str, providers: Sequence[ScalingProvider], health: ProviderHealth, now: float
) -> tuple[int | None, list[ProviderEvent]]:
    """How many more instances the usable providers of ``queue`` could start (None: no known limit),
    and the events of the providers whose capacity query failed (they count as full, and degrade)."""
    total: int | None = 0
    events: list[ProviderEvent] = []
    for provider in providers:
        if not health.usable(provider.name, now):
            continue
        try:
            room = provider.capacity(queue).room
        except ProviderError as exc:
            reason = f"{exc.kind}: {exc}"
            events.append(health.failed(provider.name, now, reason, kind=exc.kind, retry_after_s=exc.retry_after_s))
            continue
        except Exception as exc:  # noqa: BLE001 - as in start_with_fallback
            log.exception("scaling provider %s failed unexpectedly", provider.name)
            events.append(health.failed(provider.name, now, f"error: {type(exc).__name__}: {exc}"))
            continue
        if room is None or total is None:
            total = None
        else:
            total += room
    return total, events
