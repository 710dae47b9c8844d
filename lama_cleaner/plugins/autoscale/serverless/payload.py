"""The payload a serverless provider invokes a function with, and the shipped handler reads.

It tells a fresh instance everything it needs to become a node by itself: where the scheduler is
(the instance connects out; nothing connects in), which queues to join, the labels that name the
instance, and how long to stay without work before exiting (scale to zero). JSON, versioned, and
small (an asynchronous Lambda invocation takes at most 256 KB to 1 MB depending on the API).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

VERSION = 1
KIND = "lama-cleaner-node"


@dataclass(frozen=True)
class InstancePayload:
    """One serverless instance's orders."""

    scheduler: str
    queues: tuple[str, ...]
    provider: str
    instance_id: str
    labels: dict[str, str] = field(default_factory=dict)
    idle_timeout_s: float = 60.0
    """Exit after this long without a task (the platform then bills nothing)."""
    stop_before_limit_s: float = 30.0
    """Hand back unfinished work and exit this long before the platform's time limit."""

    def to_json(self) -> bytes:
        data = asdict(self)
        data["queues"] = list(self.queues)
        return json.dumps({"kind": KIND, "version": VERSION, **data}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | dict[str, Any]) -> InstancePayload:
        """Parse and check a payload; ValueError naming the problem otherwise."""
        data = json.loads(raw) if isinstance(raw, (bytes, str)) else dict(raw)
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f"not a {KIND} payload")
        if data.get("version") != VERSION:
            raise ValueError(f"payload version {data.get('version')!r} is not {VERSION}")
        try:
            payload = cls(
                scheduler=str(data["scheduler"]),
                queues=tuple(str(q) for q in data["queues"]),
                provider=str(data["provider"]),
                instance_id=str(data["instance_id"]),
                labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
                idle_timeout_s=float(data.get("idle_timeout_s", 60.0)),
                stop_before_limit_s=float(data.get("stop_before_limit_s", 30.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad {KIND} payload: {exc!r}") from exc
        if not payload.scheduler.startswith("tcp://") or not payload.queues:
            raise ValueError("a payload needs a tcp:// scheduler and at least one queue")
        return payload
