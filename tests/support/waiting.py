"""Wait for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not become true before the deadline."""


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, message: str = "condition", interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by ``predicate`` count as "not yet" (a server still starting refuses
    connections); the last one is reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - "not yet", remembered for the report
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {message}{detail}")
        time.sleep(interval)  # the poll interval of this helper, not a guess at how long work takes
