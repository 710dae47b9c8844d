"""One evaluation of the autoscaler: observe the scheduler, decide, act; and manual scaling.

:meth:`Autoscaler.tick` is what the periodic job runs every ``interval_s``:

1. read ``stats()`` from the scheduler;
2. follow the launched instances (:mod:`.tracking`): match registrations, end the ones that left,
   vanished or never came (abnormal endings are counted against their provider, and one that never
   registered degrades it);
3. release the instances whose nodes were drained and now hold no task (or are gone), through
   their provider: the only way capacity is ever taken away;
4. ask the policy (:mod:`.policy`) what to do, given the pending launches and the room the queue's
   healthy providers have;
5. carry the decisions out: scale-up walks the queue's providers with fallback (:mod:`.fallback`),
   scale-down asks the scheduler to drain exactly the chosen nodes.

Every decision is logged with its reason, counted, kept for the API, and passed to ``on_decision``
(the plugin forwards it to the ``scaling_decision`` hook); provider events go to
``on_provider_event``. One lock serialises ticks and manual requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .config import AutoscaleConfig
from .decisions import SCALE_DOWN, SCALE_UP, Decision, History, Outcome, ScaleRequest
from .fallback import ProviderEvent, ProviderHealth, headroom, start_with_fallback
from .observed import NodeInfoView, SchedulerLike, SchedulerStatsView
from .policy import PolicyMemory, evaluate, plan_manual
from .providers.base import LaunchedInstance, ProviderError, ScalingProvider
from .tracking import (
    LEFT_EVENT,
    NEVER_REGISTERED_EVENT,
    VANISHED_EVENT,
    InstanceTracker,
    Tracked,
    TrackEvent,
)

log = logging.getLogger(__name__)

COUNTERS = (
    "evaluations",
    "decisions",
    "scale_up",
    "scale_down",
    "manual",
    "instances_started",
    "nodes_drained",
    "instances_released",
    "shortfall",
    "abnormal_instances",
    "provider_errors",
    "evaluation_errors",
)


class UnknownQueue(KeyError):
    """A manual request for a queue that has no ``[autoscale.queues.<name>]`` policy."""


class Autoscaler:
    """Observes one scheduler and scales its queues through the configured providers."""

    def __init__(
        self,
        config: AutoscaleConfig,
        providers: Mapping[str, ScalingProvider],
        scheduler: SchedulerLike,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_decision: Callable[[Decision, Outcome], None] | None = None,
        on_provider_event: Callable[[ProviderEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.providers = dict(providers)
        self.scheduler = scheduler
        self.clock = clock
        self.on_decision = on_decision
        self.on_provider_event = on_provider_event
        self.memory = PolicyMemory()
        self.health = ProviderHealth(config.retry_min_s, config.retry_max_s)
        self.tracker = InstanceTracker(config.register_timeout_s, goodbye_grace_s=max(10.0, 2 * config.interval_s))
        self.outcomes = History(config.history)
        self.events = History(config.history)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.last_error = ""
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ the periodic evaluation
    def tick(self) -> list[Outcome]:
        """Observe, follow instances, release drained ones, decide and act (see the module docstring)."""
        with self._lock:
            now = self.clock()
            self.counters["evaluations"] += 1
            stats = self.scheduler.stats()
            self._follow_instances(stats, now)
            self._release_drained(stats, now)
            rooms = self._headroom(now)
            decisions = evaluate(
                self.config.queues,
                stats,
                now,
                self.memory,
                pending=self.tracker.pending(),
                headroom=rooms,
                leaving=self.tracker.leaving_nodes(),
            )
            return [self._execute(decision, now) for decision in decisions]

    def safe_tick(self) -> list[Outcome]:
        """:meth:`tick` for a scheduler job: an exception is logged and counted, never raised (the next
        evaluation tries again)."""
        try:
            return self.tick()
        except Exception as exc:  # noqa: BLE001 - a periodic job must survive a bad evaluation
            self.counters["evaluation_errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("autoscale evaluation failed")
            return []

    # ------------------------------------------------------------------ manual scaling
    def scale(self, queue: str, request: ScaleRequest | str) -> Outcome:
        """``=N``, ``+N`` or ``-N`` nodes for ``queue`` now (kept within its min/max), carried out like a
        policy decision. Raises :class:`UnknownQueue` for a queue without a policy, ValueError for a
        malformed request."""
        if isinstance(request, str):
            request = ScaleRequest.parse(request)
        with self._lock:
            policy = self.config.queues.get(queue)
            if policy is None:
                raise UnknownQueue(queue)
            now = self.clock()
            stats = self.scheduler.stats()
            self._follow_instances(stats, now)
            room = self._headroom(now).get(queue)
            decision = plan_manual(
                queue,
                request,
                policy,
                stats,
                now,
                self.memory,
                pending=self.tracker.pending().get(queue, 0),
                headroom=room,
                leaving=self.tracker.leaving_nodes(),
            )
            return self._execute(decision, now)

    # ------------------------------------------------------------------ node events (phase: node_event hook)
    def node_joined(self, node: NodeInfoView) -> None:
        with self._lock:
            event = self.tracker.node_joined(node, self.clock())
            if event is not None:
                log.info("autoscale: %s %s (%s)", event.kind, event.key, event.reason)

    def node_gone(self, node_id: str, *, goodbye: bool) -> None:
        with self._lock:
            self.tracker.node_gone(node_id, goodbye=goodbye, now=self.clock())

    # ------------------------------------------------------------------ what the API shows
    def status(self) -> dict[str, Any]:
        with self._lock:
            health = self.health.snapshot()
            queues = {}
            for name, policy in self.config.queues.items():
                mem = self.memory.queue(name)
                queues[name] = {
                    "min_nodes": policy.min_nodes,
                    "max_nodes": policy.max_nodes,
                    "providers": list(policy.providers),
                    "nodes": mem.nodes,
                    "wanted": mem.wanted,
                    "pending": self.tracker.pending().get(name, 0),
                    "held": mem.held,
                    "last_scale_up": mem.last_up,
                    "last_scale_down": mem.last_down,
                }
            providers = {}
            for name, provider in self.providers.items():
                try:
                    state = provider.state()
                except Exception as exc:  # noqa: BLE001 - the API shows a broken provider, it does not fail
                    state = {"error": f"{type(exc).__name__}: {exc}"}
                providers[name] = {"state": state, "health": health.get(name) or {"status": "healthy"}}
            return {
                "now": self.clock(),
                "interval_s": self.config.interval_s,
                "queues": queues,
                "providers": providers,
                "instances": self.tracker.snapshot(),
                "decisions": [o.to_dict() for o in self.outcomes],
                "events": [e.to_dict() for e in self.events],
                "counters": dict(self.counters),
                "last_error": self.last_error,
            }

    def close(self) -> None:
        """Close the providers (local nodes are stopped; cloud instances are left to idle out)."""
        for provider in self.providers.values():
            try:
                provider.close()
            except Exception:  # noqa: BLE001 - close the others anyway
                log.exception("closing scaling provider %s failed", provider.name)

    # ------------------------------------------------------------------ steps
    def _queue_providers(self, queue: str) -> list[ScalingProvider]:
        policy = self.config.queues.get(queue)
        names = policy.providers if policy is not None else []
        return [self.providers[n] for n in names if n in self.providers]

    def _headroom(self, now: float) -> dict[str, int | None]:
        rooms: dict[str, int | None] = {}
        for queue in self.config.queues:
            room, events = headroom(queue, self._queue_providers(queue), self.health, now)
            rooms[queue] = room
            for event in events:
                self._provider_event(event)
        return rooms

    def _follow_instances(self, stats: SchedulerStatsView, now: float) -> None:
        for event in self.tracker.observe(list(stats.nodes), now):
            self._instance_event(event, now)

    def _instance_event(self, event: TrackEvent, now: float) -> None:
        level = logging.WARNING if event.abnormal else logging.INFO
        log.log(level, "autoscale: instance %s of %s %s (%s)", event.key, event.provider, event.kind, event.reason)
        if event.kind not in (LEFT_EVENT, NEVER_REGISTERED_EVENT, VANISHED_EVENT):
            return
        ended = next((t for t in reversed(self.tracker.ended()) if t.key == event.key), None)
        provider = self.providers.get(event.provider)
        if provider is not None and ended is not None:
            try:
                provider.forget([ended.instance])
            except Exception:  # noqa: BLE001 - bookkeeping of one provider must not stop the evaluation
                log.exception("scaling provider %s failed to forget %s", provider.name, event.key)
        if event.kind == NEVER_REGISTERED_EVENT:
            self.counters["abnormal_instances"] += 1
            reason = f"instance {event.key} {event.reason}"
            self._provider_event(self.health.failed(event.provider, now, reason, kind=event.kind))
        elif event.kind == VANISHED_EVENT:
            self.counters["abnormal_instances"] += 1
            reason = f"instance {event.key}: {event.reason}"
            self._provider_event(self.health.count_error(event.provider, now, reason, kind=event.kind))

    def _release_drained(self, stats: SchedulerStatsView, now: float) -> None:
        by_provider: dict[str, list[Tracked]] = {}
        for tracked in self.tracker.releasable(list(stats.nodes)):
            by_provider.setdefault(tracked.instance.provider, []).append(tracked)
        for name, items in by_provider.items():
            provider = self.providers.get(name)
            keys = [t.key for t in items]
            if provider is None:
                log.warning("autoscale: no provider %r to release %s; forgetting them", name, ", ".join(keys))
                self.tracker.released(keys, now)
                continue
            instances: list[LaunchedInstance] = [t.instance for t in items]
            try:
                provider.release(instances)
            except ProviderError as exc:  # retried at the next evaluation
                reason = f"release failed: {exc.kind}: {exc}"
                self._provider_event(self.health.count_error(name, now, reason, kind="release"))
                continue
            except Exception as exc:  # noqa: BLE001 - as above
                log.exception("scaling provider %s failed to release %s", name, ", ".join(keys))
                self._provider_event(self.health.count_error(name, now, f"release failed: {exc!r}", kind="release"))
                continue
            self.tracker.released(keys, now)
            self.counters["instances_released"] += len(keys)
            log.info("autoscale: released %s from %s after drain", ", ".join(keys), name)

    def _execute(self, decision: Decision, now: float) -> Outcome:
        outcome = Outcome(decision)
        if decision.action == SCALE_UP:
            result = start_with_fallback(decision.queue, decision.count, self._queue_providers(decision.queue),
                                         self.health, now)  # fmt: skip
            self.tracker.launched(result.launched, now)
            outcome.started, outcome.shortfall, outcome.errors = result.per_provider, result.shortfall, result.errors
            for event in result.events:
                self._provider_event(event)
            self.counters["instances_started"] += len(result.launched)
            self.counters["shortfall"] += result.shortfall
        elif decision.action == SCALE_DOWN:
            for node_id in decision.drain:
                try:
                    accepted = self.scheduler.drain_node(node_id)
                except Exception as exc:  # noqa: BLE001 - one refused drain must not stop the others
                    outcome.errors.append(f"drain {node_id}: {type(exc).__name__}: {exc}")
                    continue
                if accepted is False:
                    outcome.errors.append(f"drain {node_id}: the scheduler does not know this node")
                    continue
                outcome.drained.append(node_id)
            self.tracker.drain_requested(outcome.drained, now)
            self.counters["nodes_drained"] += len(outcome.drained)
        if decision.action in (SCALE_UP, SCALE_DOWN):
            self.counters["decisions"] += 1
            self.counters[decision.action] += 1
            if decision.source == "manual":
                self.counters["manual"] += 1
        self._log_outcome(outcome)
        self.outcomes.add(outcome)
        if self.on_decision is not None:
            try:
                self.on_decision(decision, outcome)
            except Exception:  # noqa: BLE001 - an observer must not break scaling
                log.exception("scaling_decision observer failed")
        return outcome

    def _log_outcome(self, outcome: Outcome) -> None:
        decision = outcome.decision
        detail = ""
        if outcome.started:
            detail += " started " + ", ".join(f"{n} on {p}" for p, n in outcome.started.items())
        if outcome.drained:
            detail += " draining " + ", ".join(outcome.drained)
        if outcome.shortfall:
            detail += f" short by {outcome.shortfall}"
        if outcome.errors:
            detail += " errors: " + "; ".join(outcome.errors)
        level = logging.WARNING if outcome.errors or outcome.shortfall else logging.INFO
        log.log(level, "autoscale %s%s", decision.reason, (" ->" + detail) if detail else "")

    def _provider_event(self, event: ProviderEvent) -> None:
        self.counters["provider_errors"] += event.kind in ("degraded", "error")
        self.events.add(event)
        level = logging.INFO if event.kind == "recovered" else logging.WARNING
        log.log(level, "autoscale provider %s %s: %s", event.provider, event.kind, event.reason)
        if self.on_provider_event is not None:
            try:
                self.on_provider_event(event)
            except Exception:  # noqa: BLE001 - an observer must not break scaling
                log.exception("scaling_provider_event observer failed")
