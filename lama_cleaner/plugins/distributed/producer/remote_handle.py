"""``RemoteSchedulerHandle``: the scheduler handle of a web server whose scheduler runs elsewhere.

Same methods and return types as the embedded scheduler's ``LocalSchedulerHandle``, over the web
server's own :class:`~.client.SchedulerClient` connection: ``stats()`` is a ``STATS`` request,
``drain_node`` a ``DRAIN``, ``call`` a ``CALL`` (protocol minor 1, ``docs/protocol.md``). A plugin of
the web process thus reads the same snapshot and reaches the same ``scheduler_call`` plugins in both
modes. Errors: no answer in time is the client's ``SchedulerUnavailable``; a scheduler that predates
the request answers ``REJECTED 400`` and raises :class:`SchedulerTooOld`.
"""

from __future__ import annotations

from typing import Any

from ..scheduler.handle import SchedulerCallError, SchedulerStats, stats_from_dict
from ..wire import protocol as p
from .client import SchedulerClient

DEFAULT_TIMEOUT_S = 5.0


class SchedulerTooOld(RuntimeError):
    """The scheduler does not know this request (it speaks protocol 1 below minor 1)."""


class RemoteSchedulerHandle:
    """A ``SchedulerHandle`` that asks an external scheduler; safe from any thread (the client is)."""

    local = False

    def __init__(self, client: SchedulerClient, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._client = client
        self._timeout = timeout

    @property
    def control_endpoint(self) -> str:
        """The endpoint this web server reaches the scheduler on: nodes use the same one."""
        return self._client.endpoint

    def stats(self) -> SchedulerStats:
        reply = self._ask(p.STATS, {})
        return stats_from_dict(reply.header.get("stats") or {})

    def drain_node(self, node_id: str) -> bool:
        """True once the scheduler drains it; False for an unknown (404) or offline (409) node."""
        reply = self._client.request(p.DRAIN, {"node_id": node_id}, timeout=self._timeout)
        if reply.command == p.REJECTED:
            if reply.header.get("status") in (404, 409):
                return False
            raise RuntimeError(f"DRAIN refused: {reply.header.get('message')}")
        return True

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        reply = self._ask(p.CALL, {"name": name, "payload": dict(payload)})
        return dict(reply.header["result"])

    def _ask(self, command: str, header: dict[str, Any]) -> p.Message:
        reply = self._client.request(command, header, timeout=self._timeout)
        if reply.command != p.REJECTED:
            return reply
        code, message = reply.header.get("code"), str(reply.header.get("message") or "")
        if code == "unknown_call":
            raise LookupError(message)
        if code == "call_failed":
            raise SchedulerCallError(message)
        if reply.header.get("status") == 400:
            raise SchedulerTooOld(f"the scheduler at {self._client.endpoint} does not answer {command}: {message}")
        raise RuntimeError(f"{command} refused: {message}")

    def __repr__(self) -> str:
        return f"RemoteSchedulerHandle({self._client.endpoint!r})"
