"""Heartbeat and reconnect bookkeeping (pure logic, no sockets): nodes and producers use
:class:`Liveness`; nodes and the local-node supervisor use :class:`Backoff`.

Paranoid-Pirate style (ZeroMQ Guide ch. 4): every ``interval`` seconds we send a heartbeat, any
message from the peer counts as a sign of life, and a peer silent for ``interval * liveness`` is
considered gone. Reconnects back off exponentially so a restarting scheduler is not hammered, with
a little jitter so that nodes which lost the scheduler at the same moment do not retry in lockstep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Liveness:
    """When to send the next heartbeat, and whether the peer has gone silent for too long."""

    interval_s: float
    liveness: int
    last_seen: float
    next_send: float

    def __init__(self, interval_s: float, liveness: int, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.configure(interval_s, liveness)
        self.reset()

    def configure(self, interval_s: float, liveness: int) -> None:
        """Adopt the values a peer announced (WELCOME) without resetting the timers."""
        self.interval_s = max(0.01, float(interval_s))
        self.liveness = max(1, int(liveness))

    def reset(self) -> None:
        """A fresh connection: the peer gets a whole liveness window to answer."""
        now = self.clock()
        self.last_seen = now
        self.next_send = now

    def seen(self) -> None:
        self.last_seen = self.clock()

    def due(self) -> bool:
        """True (and re-armed) when it is time to send a heartbeat."""
        now = self.clock()
        if now >= self.next_send:
            self.next_send = now + self.interval_s
            return True
        return False

    @property
    def expired(self) -> bool:
        return self.clock() - self.last_seen > self.interval_s * self.liveness

    def time_to_next(self) -> float:
        """Seconds until the next heartbeat is due (a poll timeout), never negative."""
        return max(0.0, self.next_send - self.clock())


class Backoff:
    """Exponential delays: ``minimum``, doubling on each failure, capped at ``maximum``.

    ``jitter`` (0 to 1) shortens each delay by a random fraction of at most that much, so a fleet
    that lost its scheduler together spreads its reconnects; the doubling itself is unaffected
    (the next delay doubles the un-jittered one). ``rng`` is injectable for tests."""

    def __init__(
        self, minimum: float, maximum: float, *, jitter: float = 0.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.minimum = max(0.0, float(minimum))
        self.maximum = max(self.minimum, float(maximum))
        self.jitter = min(1.0, max(0.0, float(jitter)))
        self.rng = rng
        self._next = self.minimum

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.maximum, max(self._next * 2, 0.01))
        if self.jitter:
            delay *= 1.0 - self.jitter * self.rng()
        return delay

    def reset(self) -> None:
        self._next = self.minimum
