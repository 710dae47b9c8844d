"""The one way work reports its lifecycle: an ``EventSink`` that forwards to the ``task_event`` hook.

The same sink calls other observing hooks off the caller's thread too (``notify``): the
``distributed`` plugin's ``node_event`` and ``task_unschedulable`` go through it, with the same
guarantees, so the scheduler's loop never runs observer code.

Executors (local or distributed) only know this tiny object, not Socket.IO, metrics or logs; every
observer is a plugin implementing ``task_event``.

``emit`` is called on the I/O path: the request thread in classic mode, the producer's ZeroMQ thread
in distributed mode. Observer code never runs there. Each ``task_event`` implementation has its own
dispatcher: a thread fed by a bounded queue (``observer_queue.py``; an observer marked with :func:`may_lag`
takes events in batches under load, at most a few milliseconds late, instead of being woken for each), so
that

- a slow observer delays no reply and no other observer (each sees its events in order);
- a raising observer is logged with its plugin's name and the task id, and keeps receiving events;
- an observer that cannot keep up loses events (counted and logged) instead of blocking the caller:
  dropping an observation is better than stalling every request behind it;
- ``close()`` delivers what is queued, within a deadline, when the server stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pluggy

from .observer_queue import LINGER_S, ObserverQueue
from .tasks import TaskEvent

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Events an observer may lag behind before new ones are dropped for it (about a minute of a busy
server's progress updates; a few MB at most)."""
DROP_LOG_INTERVAL_S = 10.0
"""At most one "dropped" warning per observer per interval: a stuck observer must not flood the log."""
CLOSE_TIMEOUT_S = 5.0


class EventBatch:
    """A round of events handed to an observer in one queue operation, delivered one by one, in order.

    A scheduler round can finish hundreds of tasks at once; a queue hand-off (a lock, a condition, a wake-up
    of the observer's thread and a GIL hand-over) per event cost more than most observers themselves. The
    batch holds the events as dicts of :class:`TaskEvent` fields (what the scheduler has): they become
    ``TaskEvent`` objects on the first observer's thread, not on the scheduler's loop. Two observers building
    them at once build equal lists; either is kept."""

    __slots__ = ("_fields", "_events")

    def __init__(self, fields: list[dict[str, Any]]) -> None:
        self._fields = fields
        self._events: list[TaskEvent] | None = None

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[TaskEvent]:
        events = self._events
        if events is None:
            events = self._events = [TaskEvent(**f) for f in self._fields]
        return iter(events)


MAY_LAG = "lama_cleaner_may_lag"
"""Attribute of a hook implementation's function: its events may come a few milliseconds late, in batches."""


def may_lag(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a ``task_event`` implementation whose events may arrive up to ``observer_queue.LINGER_S`` late, in
    batches (logs, metrics): under load its thread is then not woken for every scheduler round. Observers that
    act on events at once (the Socket.IO notifier: a subscriber must see what follows its subscription, not
    what came before it) are left unmarked and are woken per event, as before."""
    setattr(function, MAY_LAG, True)
    return function


class HookCall:
    """The arguments of one call of an observing hook other than ``task_event`` (see ``EventSink.notify``)."""

    __slots__ = ("kwargs",)

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


class ObserverDispatcher:
    """One implementation of an observing hook (``task_event`` unless told) and the thread that calls it, in order."""

    def __init__(self, impl: pluggy.HookImpl, maxsize: int = QUEUE_SIZE, hook_name: str = "task_event") -> None:
        self.impl = impl
        self.plugin_name = impl.plugin_name
        self.hook_name = hook_name
        self.dropped = 0
        lags = bool(getattr(impl.function, MAY_LAG, False))
        self._queue = ObserverQueue(maxsize, linger_s=LINGER_S if lags else 0.0)
        self._last_drop_log = float("-inf")
        self._closed = False
        self._takes_event = "event" in impl.argnames
        self._thread = threading.Thread(target=self._run, name=f"{hook_name}:{self.plugin_name}", daemon=True)
        self._thread.start()

    def put(self, item: TaskEvent | EventBatch | HookCall | Callable[[], None]) -> bool:
        """Queue an event, a batch of them (one hand-off for many, see :meth:`EventSink.emit_fields`) or a
        follow-up call (see :meth:`EventSink.after_events`); never blocks. False when the observer's queue
        was full or it is closed and the item was dropped."""
        if self._closed:
            return False
        # Events wait for the observer's next look (at most a linger); a call is waited on: wake it now.
        if self._queue.put(item, urgent=not isinstance(item, (TaskEvent, EventBatch))):
            return True
        self.dropped += len(item) if isinstance(item, EventBatch) else 1
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            log.warning(
                "%s observer %s is %d events behind: dropped an event (%d dropped so far)",
                self.hook_name,
                self.plugin_name,
                self._queue.maxsize,
                self.dropped,
            )
        return False

    def close(self, deadline: float) -> bool:
        """Deliver what is queued, then stop the thread; True if it finished before ``deadline``
        (a ``time.monotonic()`` value). A thread stuck in a slow observer is left behind (daemon)."""
        if not self._closed:
            self._closed = True
            self._queue.close()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def wait_idle(self, deadline: float) -> bool:
        """True once every item queued so far was handled (for tests and orderly shutdowns)."""
        done = threading.Event()
        if not self.put(done.set):
            return False
        return done.wait(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            items = self._queue.take()
            if not items:
                return  # closed, and everything queued was delivered
            for item in items:
                try:
                    if isinstance(item, TaskEvent):
                        self._deliver(item)
                    elif isinstance(item, EventBatch):
                        for event in item:
                            self._deliver(event)
                    elif isinstance(item, HookCall):
                        self._call(item.kwargs)
                    else:
                        item()
                except Exception:  # noqa: BLE001 - a follow-up call's failure must not end the dispatcher
                    log.exception("%s dispatcher %s: a queued call failed", self.hook_name, self.plugin_name)

    def _deliver(self, event: TaskEvent) -> None:
        try:
            if self._takes_event:
                self.impl.function(event)
            else:  # an implementation may take none of the hook's arguments
                self.impl.function()
        except Exception:  # noqa: BLE001 - an observer bug must not fail the work it watches
            log.exception(
                "task_event observer %s failed for task %s (%s)", self.plugin_name, event.task_id, event.status
            )

    def _call(self, kwargs: dict[str, Any]) -> None:
        try:
            self.impl.function(*(kwargs[name] for name in self.impl.argnames))
        except Exception:  # noqa: BLE001 - an observer bug must not fail the work it watches
            log.exception("%s observer %s failed", self.hook_name, self.plugin_name)


class EventSink:
    """Forwards :class:`TaskEvent` objects to every ``task_event`` implementation, off the caller's thread."""

    def __init__(self, pm: pluggy.PluginManager, *, queue_size: int = QUEUE_SIZE) -> None:
        self._pm = pm
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._dispatchers: dict[int, ObserverDispatcher] = {}
        self._closed = False

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The manager events go to; the built-in executor builds its model/plugin registries from it."""
        return self._pm

    def emit(self, event: TaskEvent) -> None:
        """Queue ``event`` for every observer and return at once; never raises (observers are not
        part of the task). After :meth:`close` events are dropped."""
        for dispatcher in self._observers():
            dispatcher.put(event)

    def emit_fields(self, fields: list[dict[str, Any]]) -> None:
        """Queue a round of events, in order, for every observer with one hand-off each: what a caller that
        produces events in rounds (the scheduler) uses. Each event is a dict of :class:`TaskEvent` fields,
        made into an event on the observers' threads. Same guarantees as :meth:`emit`."""
        if fields:
            batch = EventBatch(fields)
            for dispatcher in self._observers():
                dispatcher.put(batch)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of the observing hook ``hook_name`` with ``kwargs``, each on its
        own dispatcher thread, and return at once; never raises. A hook no loaded plugin declares
        has no observers."""
        call = HookCall(kwargs)
        for dispatcher in self._observers(hook_name):
            dispatcher.put(call)

    def has_observers(self, hook_name: str) -> bool:
        """Whether some plugin implements ``hook_name`` (so a caller can skip building its arguments)."""
        caller = getattr(self._pm.hook, hook_name, None)
        return caller is not None and bool(caller.get_hookimpls())

    def after_events(self, observer: object, call: Callable[[], None]) -> None:
        """Run ``call`` on ``observer``'s dispatcher once the events already queued for it are
        delivered, so that what an observer sends on its own (the Socket.IO notifier's
        ``diffusion_finish``) keeps its place after the task's events. Runs ``call`` here if
        ``observer`` is not a registered ``task_event`` observer."""
        for dispatcher in self._observers():
            if dispatcher.impl.plugin is observer:
                dispatcher.put(call)
                return
        call()

    def dropped(self) -> dict[str, int]:
        """``task_event`` events dropped so far per observer (plugin name), because its queue was full."""
        with self._lock:
            return {d.plugin_name: d.dropped for d in self._dispatchers.values() if d.hook_name == "task_event"}

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until every observer has handled the events queued so far; False on timeout."""
        deadline = time.monotonic() + timeout
        current = self._observers()  # made now if missing, as emit would
        with self._lock:
            others = [] if self._closed else [d for d in self._dispatchers.values() if d not in current]
        return all([d.wait_idle(deadline) for d in [*current, *others]])

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Deliver the queued events and stop the dispatchers, all within ``timeout`` seconds.
        Returns False when some observer did not finish in time (it is left behind and logged)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            dispatchers = list(self._dispatchers.values())
        finished = True
        for dispatcher in dispatchers:
            if not dispatcher.close(deadline):
                finished = False
                log.warning(
                    "task_event observer %s did not finish within %gs of shutdown", dispatcher.plugin_name, timeout
                )
        return finished

    def _observers(self, hook_name: str = "task_event") -> list[ObserverDispatcher]:
        """A dispatcher per current implementation, made on first use (plugins may register late)."""
        caller = getattr(self._pm.hook, hook_name, None)
        impls = caller.get_hookimpls() if caller is not None else []
        with self._lock:
            if self._closed:
                return []
            out = []
            for impl in reversed(impls):  # pluggy's own call order
                dispatcher = self._dispatchers.get(id(impl))
                if dispatcher is None or dispatcher.impl is not impl:
                    dispatcher = ObserverDispatcher(impl, self._queue_size, hook_name)
                    self._dispatchers[id(impl)] = dispatcher
                out.append(dispatcher)
            return out
