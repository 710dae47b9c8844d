"""An in-memory provider for testing the logic above providers (fallback, the autoscaler).

It fails on demand with the real error types, so the code under test sees exactly what a real
provider raises; the providers themselves are tested against their real SDKs elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lama_cleaner.plugins.autoscale.providers.base import (
    Capacity,
    LaunchedInstance,
    ProviderError,
    ScalingProvider,
)


class StubProvider(ScalingProvider):
    def __init__(self, name: str, limit: int | None = None) -> None:
        self.name = name  # type: ignore[misc]  # an instance attribute: several stubs with different names
        self.limit = limit
        self.running: dict[str, LaunchedInstance] = {}
        self.fail_next: list[ProviderError] = []
        self.capacity_error: ProviderError | None = None
        self.calls: list[tuple[str, Any]] = []
        self._n = 0

    def capacity(self, queue: str) -> Capacity:
        self.calls.append(("capacity", queue))
        if self.capacity_error is not None:
            raise self.capacity_error
        return Capacity(self.limit, len(self.running))

    def start(self, queue: str, count: int) -> list[LaunchedInstance]:
        self.calls.append(("start", (queue, count)))
        if self.fail_next:
            raise self.fail_next.pop(0)
        started = []
        for _ in range(count):
            self._n += 1
            inst = LaunchedInstance(self.name, queue, f"{self.name}-{self._n}")
            self.running[inst.instance_id] = inst
            started.append(inst)
        return started

    def release(self, instances: Sequence[LaunchedInstance]) -> None:
        self.calls.append(("release", [i.instance_id for i in instances]))
        for inst in instances:
            self.running.pop(inst.instance_id or "", None)

    def forget(self, instances: Sequence[LaunchedInstance]) -> None:
        self.calls.append(("forget", [i.instance_id for i in instances]))
        for inst in instances:
            self.running.pop(inst.instance_id or "", None)

    def state(self) -> dict[str, Any]:
        return {"running": sorted(self.running)}

    def starts(self) -> list[tuple[str, int]]:
        return [args for call, args in self.calls if call == "start"]
