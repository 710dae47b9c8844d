"""The queue between the code that reports task events and one observer's thread.

A plain ``queue.Queue`` wakes the observer's thread on every ``put``. The scheduler reports events once per
round, and a busy scheduler runs a thousand rounds a second: a wake-up each (a futex, a thread switch and a
GIL hand-over on the scheduler's own process) cost more than what the observers do with the events. This
queue wakes its consumer only when it sleeps; a consumer that just handled items *lingers* instead: it looks
again after ``linger_s`` without asking to be woken, and goes to sleep only after a linger that found nothing.
Under load events are so delivered in batches, at most ``linger_s`` late, with no wake-up per round; on a
quiet server the first event after a pause wakes the consumer at once. Urgent items (a flush, a follow-up
call that must keep its place) always wake it.

Correctness of the unlocked fast path rests on the GIL's sequential consistency: the producer appends, then
reads ``_sleeping``; the consumer sets ``_sleeping``, then checks for items. Either the consumer sees the
item, or the producer sees the flag and wakes it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

LINGER_S = 0.01
"""How late a busy observer may see an event: 10 ms (logs, metrics and the browser's progress bar do not
notice), for at most 100 wake-ups a second whatever the event rate."""


class ObserverQueue:
    """Bounded (``maxsize`` items; a batch of events is one item), never blocks the producer. ``linger_s = 0``:
    a plain queue that wakes its consumer for every item (what an observer that must not lag gets)."""

    def __init__(self, maxsize: int, linger_s: float = LINGER_S) -> None:
        self.maxsize = maxsize
        self.linger_s = linger_s
        self._items: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._sleeping = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any, *, urgent: bool = False) -> bool:
        """Append ``item``; False when the queue is full (the caller counts the drop). Wakes the consumer only
        if it sleeps or ``urgent``."""
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        if urgent or self._sleeping or self.linger_s <= 0:
            with self._cond:
                self._cond.notify()
        return True

    def close(self) -> None:
        """No more items will come: the consumer takes what is left, then gets an empty list."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def take(self) -> list[Any]:
        """Block until there are items and return them all, oldest first; ``[]`` once closed and empty."""
        found_nothing = False
        with self._cond:
            while True:
                if self._items:
                    return self._drain()
                if self._closed:
                    return []
                if found_nothing or self.linger_s <= 0:  # a whole linger without items: sleep until a put wakes us
                    self._sleeping = True
                    if not self._items and not self._closed:
                        self._cond.wait()
                    self._sleeping = False
                    found_nothing = False
                else:
                    self._cond.wait(self.linger_s)
                    found_nothing = not self._items

    def _drain(self) -> list[Any]:
        items: list[Any] = []
        pop = self._items.popleft
        try:
            while True:  # one pop at a time: a producer may append meanwhile, and nothing is lost
                items.append(pop())
        except IndexError:
            return items
