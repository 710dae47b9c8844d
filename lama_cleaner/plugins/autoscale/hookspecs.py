"""Hooks the ``autoscale`` plugin publishes (through the core's ``add_hookspecs``) for other plugins.

A third-party plugin adds a scaling provider by returning its class from
``register_scaling_providers``; it observes what the autoscaler does through ``scaling_decision``
and ``scaling_provider_event``. Each hook is documented with an example in ``docs/scaling.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..hookspecs import hookspec

if TYPE_CHECKING:
    from .decisions import Decision, Outcome
    from .fallback import ProviderEvent
    from .providers.base import ScalingProvider


@hookspec
def register_scaling_providers(config: Any) -> list[type[ScalingProvider]]:
    """Return provider classes (subclasses of ``ScalingProvider``) that queues may name in their ``providers``."""


@hookspec
def scaling_decision(decision: Decision, outcome: Outcome) -> None:
    """Observe a scaling decision (the policy's or an operator's) once it was carried out."""


@hookspec
def scaling_provider_event(event: ProviderEvent) -> None:
    """Observe a provider becoming degraded or recovering, or an error counted against it."""
