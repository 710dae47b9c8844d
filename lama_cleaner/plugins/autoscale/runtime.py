"""The autoscaler of one running scheduler: built when it starts, stopped (drain first) when it stops.

The plugin's ``scheduler_started`` hook builds an :class:`AutoscaleRuntime` in the process that runs
the scheduler (the web server with an embedded scheduler, or ``lama-cleaner scheduler``); it
validates the ``[autoscale]`` section against the providers the plugins register and the
scheduler's queues, builds the providers, and starts the periodic evaluation (:mod:`.jobs`).

Everything else reaches it through the plugin's hooks: ``node_event`` feeds instance tracking,
``scheduler_call`` answers ``autoscale.status`` and ``autoscale.scale`` (:meth:`AutoscaleRuntime.call`),
which is how the web process talks to it in both deployments (``SchedulerHandle.call``).

Stopping drains first where it can: the evaluation stops; if the scheduler still runs, every node a
provider started is asked to drain (it finishes its task and leaves); then each provider is closed,
which stops the local node processes that are still there (SIGTERM, which makes a node drain itself,
then SIGKILL after ``stop_grace_s``). No node process started here outlives it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...config import ConfigError
from .autoscaler import Autoscaler, UnknownQueue
from .config import AutoscaleConfig, validate_autoscale_config
from .jobs import EvaluationJob
from .providers.base import ProviderContext
from .providers.registry import build_providers, collect_provider_classes
from .tracking import LEAVING, REGISTERED

log = logging.getLogger(__name__)

STATUS_CALL = "autoscale.status"
SCALE_CALL = "autoscale.scale"
CALLS = (STATUS_CALL, SCALE_CALL)
"""The ``scheduler_call`` names this plugin answers."""

NOT_FOR_NODES = frozenset({"distributed", "autoscale"})
"""Plugins a node started by the autoscaler does not load (it needs only models and image plugins)."""


def call_error(status: int, code: str, message: str) -> dict[str, Any]:
    """The answer of a refused call: the web process turns it into the same HTTP error."""
    return {"error": {"status": status, "code": code, "message": message}}


def node_endpoint(handle: Any, config: Any) -> str:
    """Where a node started here connects: the handle's ``control_endpoint`` (a bind to port 0 learns its
    port only when bound), else the configured one; a wildcard host becomes loopback."""
    endpoint = getattr(handle, "control_endpoint", None)
    if not (isinstance(endpoint, str) and endpoint):
        dist = config.distributed
        endpoint = dist.scheduler or dist.scheduler_bind
    host, sep, port = endpoint.removeprefix("tcp://").rpartition(":")
    if sep and host in ("*", "0.0.0.0", "[::]", "::"):
        endpoint = f"tcp://127.0.0.1:{port}"
    return endpoint


def node_plugins(config: Any) -> tuple[str, ...]:
    return tuple(p for p in config.plugins if p and p not in NOT_FOR_NODES)


class AutoscaleRuntime:
    """One scheduler's autoscaler, its providers and its periodic job."""

    def __init__(self, handle: Any, config: Any, pluginmanager: Any) -> None:
        section: AutoscaleConfig = config.autoscale
        dist = getattr(config, "distributed", None)
        classes = collect_provider_classes(pluginmanager, config)
        queues = getattr(dist, "queues", None)
        validate_autoscale_config(section, provider_names=set(classes), queues=queues)
        self.handle = handle
        self.config = config
        self.pluginmanager = pluginmanager
        self._tmpdir = tempfile.TemporaryDirectory(prefix="lama-cleaner-autoscale-")
        context = ProviderContext(
            scheduler=node_endpoint(handle, config),
            advertised=getattr(dist, "scheduler_advertise", None),
            config_path=str(self._write_node_config(config)),
            plugins=node_plugins(config),
            host_nodes=int(getattr(dist, "local_nodes", 0) or 0),
        )
        try:
            providers = build_providers(section, classes, context)
        except ConfigError:
            self._tmpdir.cleanup()
            raise
        hook = pluginmanager.hook
        self.autoscaler = Autoscaler(
            section,
            providers,
            handle,
            on_decision=lambda decision, outcome: hook.scaling_decision(decision=decision, outcome=outcome),
            on_provider_event=lambda event: hook.scaling_provider_event(event=event),
        )
        self.job = EvaluationJob(self.autoscaler.safe_tick, section.interval_s)
        self.stopped = False

    def _write_node_config(self, config: Any) -> Path:
        """The effective configuration, for local nodes (``--config``): what the operator set for
        heartbeats, reconnects and models applies to them too."""
        path = Path(self._tmpdir.name) / "node-config.json"
        data = config.to_dict()
        data["plugins"] = list(node_plugins(config))
        data.pop("autoscale", None)  # a node has no use for it
        data.pop("server", None)  # nor for the HTTP server's settings, API token secrets included
        path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.job.start()
        queues = ", ".join(f"{q} ({', '.join(p.providers)})" for q, p in self.config.autoscale.queues.items())
        log.info("autoscale started for queues: %s", queues or "none (no [autoscale.queues.<name>] table)")

    def stop(self, *, drain: bool) -> None:
        """Stop evaluating; with ``drain`` (the scheduler still runs) drain every node a provider
        started first; then close the providers (local node processes are stopped). Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.job.stop()
        if drain:
            self._drain_managed_nodes()
        self.autoscaler.close()
        self._tmpdir.cleanup()
        log.info("autoscale stopped")

    def _drain_managed_nodes(self) -> None:
        tracked = [t for t in self.autoscaler.tracker.live() if t.status in (REGISTERED, LEAVING) and t.node_id]
        for item in tracked:
            try:
                self.handle.drain_node(item.node_id)
            except Exception as exc:  # noqa: BLE001 - stopping: the provider's close still stops it
                log.warning("autoscale: cannot drain node %s at shutdown: %s", item.node_id, exc)

    # ------------------------------------------------------------------ hooks
    def node_event(self, event: Any) -> None:
        """``joined`` matches a node to its launch at once; ``left`` (BYE) and ``offline`` end it,
        telling a goodbye from a vanish by ``NodeInfo.left``."""
        kind, node = getattr(event, "kind", ""), getattr(event, "node", None)
        if node is None:
            return
        if kind == "joined":
            self.autoscaler.node_joined(node)
        elif kind == "left":
            self.autoscaler.node_gone(node.node_id, goodbye=True)
        elif kind == "offline":
            self.autoscaler.node_gone(node.node_id, goodbye=bool(getattr(node, "left", False)))

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        if name == STATUS_CALL:
            return self.autoscaler.status()
        if name == SCALE_CALL:
            return self._scale(payload)
        raise LookupError(name)

    def _scale(self, payload: dict[str, Any]) -> dict[str, Any]:
        queue, request = payload.get("queue"), payload.get("nodes")
        if not isinstance(queue, str) or not queue:
            return call_error(400, "validation_error", "queue: a queue name is required")
        if isinstance(request, int) and not isinstance(request, bool):
            request = f"={request}"
        if not isinstance(request, str):
            return call_error(400, "validation_error", 'nodes: expected "=N", "+N" or "-N"')
        try:
            outcome = self.autoscaler.scale(queue, request)
        except UnknownQueue:
            scaled = ", ".join(sorted(self.config.autoscale.queues)) or "none"
            message = f"queue {queue!r} is not autoscaled (no [autoscale.queues.{queue}] table; autoscaled: {scaled})"
            return call_error(404, "unknown_queue", message)
        except ValueError as exc:
            return call_error(400, "validation_error", f"nodes: {exc}")
        return {"outcome": outcome.to_dict()}


class Runtimes:
    """The runtimes of this process, one per running scheduler (normally one)."""

    def __init__(self) -> None:
        self._items: list[AutoscaleRuntime] = []

    def add(self, runtime: AutoscaleRuntime) -> None:
        self._items.append(runtime)

    def for_handle(self, handle: Any) -> AutoscaleRuntime | None:
        return next((r for r in self._items if r.handle is handle), None)

    def first(self) -> AutoscaleRuntime | None:
        return self._items[0] if self._items else None

    def remove(self, runtime: AutoscaleRuntime) -> None:
        if runtime in self._items:
            self._items.remove(runtime)

    def all(self) -> list[AutoscaleRuntime]:
        return list(self._items)

    def each(self, action: Callable[[AutoscaleRuntime], None]) -> None:
        for runtime in self.all():
            try:
                action(runtime)
            except Exception:  # noqa: BLE001 - one scheduler's autoscaler must not stop the others'
                log.exception("autoscale hook failed")
