"""The node's lifecycle as a pure state machine, the way ``journal/states.py`` is the task's.

A node is in three things at once, each a small machine of its own (orthogonal regions), because
each changes for its own reasons and survives the others' changes:

- **mode**, what the operator or scheduler asked of it::

      starting ──start──▶ serving ──drain──▶ draining
          │                  │                  │
          └──────stop────────┴──────stop────────┴──▶ stopping ──exit──▶ stopped
                             (exit from any mode: a fatal error, the parent gone, drained)

  A drain survives a reconnect; a stop cannot be taken back (a second ``stop`` only shortens the
  grace; a ``start`` after it, from a signal that came before the loop ran, leaves it stopping),
  nor can a drain.
- **link**, its registration with the scheduler: ``down ──connect──▶ joining ──welcome──▶ joined``,
  and ``lost`` (silence, UNKNOWN) back to ``down`` from either.
- **work**: ``idle ──take──▶ busy ──release──▶ idle``; a task held across a reconnect stays held.

:attr:`NodeLifecycle.state` names the combination the way a person would (``starting``, ``joining``,
``idle``, ``busy``, ``draining``, ``stopping``, ``stopped``); :attr:`NodeLifecycle.reported_state` is
what a HEARTBEAT says (the protocol's ``idle``/``busy``/``draining``, unchanged). Every change goes
through :func:`transition` over the tables below, so an illegal one (taking a second task, a WELCOME
with no HELLO out) is an :class:`IllegalTransition`, not a silent flag. No sockets, no clock: the
agent (:mod:`.agent`) decides what to do, this records where it stands.
"""

from __future__ import annotations

from ..wire import protocol as p

# ------------------------------------------------------------------ mode
STARTING = "starting"
SERVING = "serving"
DRAINING = "draining"
STOPPING = "stopping"
STOPPED = "stopped"
MODES = (STARTING, SERVING, DRAINING, STOPPING, STOPPED)

START = "start"
DRAIN = "drain"
STOP = "stop"
EXIT = "exit"

MODE_TRANSITIONS: dict[tuple[str, str], str] = {
    (STARTING, START): SERVING,
    (STOPPING, START): STOPPING,  # a signal came before the loop ran: the stop wins
    (SERVING, DRAIN): DRAINING,
    (DRAINING, DRAIN): DRAINING,  # asked again: nothing new
    (STOPPING, DRAIN): STOPPING,  # already leaving: a drain adds nothing
    (STARTING, STOP): STOPPING,
    (SERVING, STOP): STOPPING,
    (DRAINING, STOP): STOPPING,
    (STOPPING, STOP): STOPPING,  # a second signal: the grace may be shortened, nothing else
    (STARTING, EXIT): STOPPED,
    (SERVING, EXIT): STOPPED,
    (DRAINING, EXIT): STOPPED,
    (STOPPING, EXIT): STOPPED,
}
"""``(mode, event) -> mode``; everything not listed is illegal (``stopped`` is final)."""

# ------------------------------------------------------------------ link
DOWN = "down"
JOINING = "joining"
JOINED = "joined"
LINKS = (DOWN, JOINING, JOINED)

CONNECT = "connect"
WELCOME = "welcome"
LOST = "lost"

LINK_TRANSITIONS: dict[tuple[str, str], str] = {
    (DOWN, CONNECT): JOINING,
    (JOINING, WELCOME): JOINED,
    (JOINED, WELCOME): JOINED,  # the scheduler repeated itself: the queues it grants are taken again
    (JOINING, LOST): DOWN,
    (JOINED, LOST): DOWN,
    (DOWN, LOST): DOWN,
}
"""``(link, event) -> link``."""

# ------------------------------------------------------------------ work
IDLE = "idle"
BUSY = "busy"
WORKS = (IDLE, BUSY)

TAKE = "take"
RELEASE = "release"

WORK_TRANSITIONS: dict[tuple[str, str], str] = {
    (IDLE, TAKE): BUSY,
    (BUSY, RELEASE): IDLE,
}
"""``(work, event) -> work``: one task at a time."""

STATES = (STARTING, JOINING, IDLE, BUSY, DRAINING, STOPPING, STOPPED)
"""The names :attr:`NodeLifecycle.state` gives the combinations."""


class IllegalTransition(ValueError):
    """An event the node's current state does not allow: a bug in the agent, never a peer's doing."""

    def __init__(self, region: str, current: str, event: str) -> None:
        super().__init__(f"illegal node {region} transition: {event!r} in {current!r}")
        self.region = region
        self.current = current
        self.event = event


def transition(table: dict[tuple[str, str], str], region: str, current: str, event: str) -> str:
    """The state of ``region`` after ``event``; raises :class:`IllegalTransition` when not allowed."""
    try:
        return table[(current, event)]
    except KeyError:
        raise IllegalTransition(region, current, event) from None


class NodeLifecycle:
    """Where one node stands: its mode, its link to the scheduler, its work, and the stop's deadline."""

    def __init__(self) -> None:
        self.mode = STARTING
        self.link = DOWN
        self.work = IDLE
        self.stop_deadline: float | None = None
        """When a stopping node gives up waiting for its task (a monotonic time; None before a stop)."""

    def __repr__(self) -> str:
        return f"NodeLifecycle({self.state}: mode={self.mode} link={self.link} work={self.work})"

    # ------------------------------------------------------------------ events
    def start(self) -> None:
        self.mode = transition(MODE_TRANSITIONS, "mode", self.mode, START)

    def drain(self) -> None:
        self.mode = transition(MODE_TRANSITIONS, "mode", self.mode, DRAIN)

    def stop(self, deadline: float) -> bool:
        """Stop taking work, waiting for the task held at most until ``deadline`` (an earlier deadline
        from a second request wins). True when this began the stop (the scheduler should hear now)."""
        began = self.mode != STOPPING
        self.mode = transition(MODE_TRANSITIONS, "mode", self.mode, STOP)
        self.stop_deadline = deadline if self.stop_deadline is None else min(self.stop_deadline, deadline)
        return began

    def exit(self) -> None:
        self.mode = transition(MODE_TRANSITIONS, "mode", self.mode, EXIT)

    def connect(self) -> None:
        self.link = transition(LINK_TRANSITIONS, "link", self.link, CONNECT)

    def welcome(self) -> None:
        self.link = transition(LINK_TRANSITIONS, "link", self.link, WELCOME)

    def lost(self) -> None:
        self.link = transition(LINK_TRANSITIONS, "link", self.link, LOST)

    def take(self) -> None:
        self.work = transition(WORK_TRANSITIONS, "work", self.work, TAKE)

    def release(self) -> None:
        self.work = transition(WORK_TRANSITIONS, "work", self.work, RELEASE)

    # ------------------------------------------------------------------ questions
    @property
    def joined(self) -> bool:
        """Welcomed by the scheduler: it may be sent heartbeats, credit and outcomes."""
        return self.link == JOINED

    @property
    def draining(self) -> bool:
        return self.mode == DRAINING

    @property
    def stopping(self) -> bool:
        return self.mode == STOPPING

    @property
    def stopped(self) -> bool:
        return self.mode == STOPPED

    @property
    def leaving(self) -> bool:
        """Stopping or stopped: no new inference child is started any more."""
        return self.mode in (STOPPING, STOPPED)

    @property
    def accepting(self) -> bool:
        """Whether the node takes new tasks at all (neither draining nor leaving)."""
        return self.mode == SERVING

    @property
    def busy(self) -> bool:
        return self.work == BUSY

    def stop_due(self, now: float) -> bool:
        """A stopping node's grace for its task is over."""
        return self.stop_deadline is not None and self.stop_deadline <= now

    @property
    def state(self) -> str:
        """One word for a person: ``starting``, ``joining``, ``idle``, ``busy``, ``draining``,
        ``stopping`` or ``stopped``. The mode wins over the link (a stopping node is stopping, joined
        or not), and the link over the work (a node between schedulers is joining, task or not)."""
        if self.mode in (STARTING, STOPPING, STOPPED):
            return self.mode
        if self.link != JOINED:
            return JOINING
        if self.mode == DRAINING:
            return DRAINING
        return self.work

    @property
    def reported_state(self) -> str:
        """The ``state`` of a HEARTBEAT (protocol): ``draining`` for a node that takes no new work
        (draining or stopping), else ``busy`` or ``idle``."""
        if self.mode in (DRAINING, STOPPING):
            return p.NODE_DRAINING
        return p.NODE_BUSY if self.work == BUSY else p.NODE_IDLE
