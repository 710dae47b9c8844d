"""Scaling decisions, what became of them, and the manual ``=N``/``+N``/``-N`` request.

A :class:`Decision` is what the policy (or an operator) wants, with a reason a person can read in
a log line; an :class:`Outcome` is what executing it did (which providers started how many
instances, which nodes were asked to drain, what failed). Both are plain data, kept in a bounded
:class:`History` for ``GET /api/v1/autoscale``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

SCALE_UP = "scale_up"
SCALE_DOWN = "scale_down"
POLICY = "policy"
MANUAL = "manual"


@dataclass(frozen=True)
class Decision:
    """Add ``count`` nodes to ``queue`` (scale_up), or drain the nodes in ``drain`` (scale_down)."""

    queue: str
    action: str
    count: int
    reason: str
    at: float
    drain: tuple[str, ...] = ()
    source: str = POLICY

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drain"] = list(self.drain)
        return data


@dataclass
class Outcome:
    """What executing one decision did."""

    decision: Decision
    started: dict[str, int] = field(default_factory=dict)
    """Instances started, per provider."""
    drained: list[str] = field(default_factory=list)
    """Nodes the scheduler accepted to drain."""
    shortfall: int = 0
    """Nodes wanted but not started (every provider failed or was full)."""
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.decision.to_dict(),
            "started": dict(self.started),
            "drained": list(self.drained),
            "shortfall": self.shortfall,
            "errors": list(self.errors),
        }


class History:
    """The last ``limit`` items (outcomes or provider events), oldest first."""

    def __init__(self, limit: int) -> None:
        self._items: deque[Any] = deque(maxlen=max(1, limit))

    def add(self, item: Any) -> None:
        self._items.append(item)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


# ------------------------------------------------------------------ manual scaling
_REQUEST = re.compile(r"^\s*([=+-])\s*(\d+)\s*$")


@dataclass(frozen=True)
class ScaleRequest:
    """``=N`` (exactly N nodes), ``+N`` (N more) or ``-N`` (N fewer), as typed by an operator."""

    op: str
    amount: int

    @classmethod
    def parse(cls, text: str) -> ScaleRequest:
        """Parse ``=3``, ``+2`` or ``-1``; a plain ``3`` means ``=3``. Raises ValueError otherwise."""
        raw = str(text).strip()
        if raw.isdigit():
            raw = "=" + raw
        match = _REQUEST.match(raw)
        if not match:
            raise ValueError(f"expected =N, +N or -N (N a whole number), got {text!r}")
        return cls(match.group(1), int(match.group(2)))

    def target(self, current: int) -> int:
        """The node count this request asks for, given ``current`` nodes (never below 0)."""
        if self.op == "=":
            return self.amount
        if self.op == "+":
            return current + self.amount
        return max(0, current - self.amount)

    def __str__(self) -> str:
        return f"{self.op}{self.amount}"
