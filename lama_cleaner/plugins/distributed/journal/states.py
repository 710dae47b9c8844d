"""The task state machine as a pure table, so every state change in the journal is a legal one.

::

    queued ──dispatch──▶ processing ──complete──▶ completed
      │  ▲                  │  │  └────fail─────▶ failed
      │  └──retry/recover───┘  └────cancel────▶ cancelled
      ├──cancel──▶ cancelled
      ├──fail────▶ failed       (cannot be run any more, e.g. its queue was removed from the config)
      └──complete▶ completed    (a late RESULT for a task waiting for its retry: the work is done,
                                 so the retry is skipped rather than the result thrown away)

Terminal states never change; any event on them is illegal (the scheduler checks ``is_terminal``
first and counts the message as a duplicate).
"""

from __future__ import annotations

from ....tasks import TASK_STATES, TERMINAL_STATES

STATES = TASK_STATES
"""The state names are the ones ``TaskInfo.status`` reports; defined once, in ``lama_cleaner.tasks``."""
QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED = STATES
TERMINAL = TERMINAL_STATES

DISPATCH = "dispatch"
COMPLETE = "complete"
FAIL = "fail"
RETRY = "retry"
RECOVER = "recover"
CANCEL = "cancel"

EVENTS = (DISPATCH, COMPLETE, FAIL, RETRY, RECOVER, CANCEL)

TRANSITIONS: dict[tuple[str, str], str] = {
    (QUEUED, DISPATCH): PROCESSING,
    (QUEUED, CANCEL): CANCELLED,
    (QUEUED, FAIL): FAILED,
    (QUEUED, COMPLETE): COMPLETED,
    (PROCESSING, COMPLETE): COMPLETED,
    (PROCESSING, FAIL): FAILED,
    (PROCESSING, RETRY): QUEUED,
    (PROCESSING, RECOVER): QUEUED,
    (PROCESSING, CANCEL): CANCELLED,
}
"""``(state, event) -> new state``; everything not listed is illegal."""


class IllegalTransition(ValueError):
    """An event that the task's current state does not allow (a bug or a stale message)."""

    def __init__(self, current: str, event: str) -> None:
        super().__init__(f"illegal task transition: {event!r} in state {current!r}")
        self.current = current
        self.event = event


def transition(current: str, event: str) -> str:
    """The state after ``event``; raises :class:`IllegalTransition` when not allowed."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise IllegalTransition(current, event) from None


def can(current: str, event: str) -> bool:
    return (current, event) in TRANSITIONS


def is_terminal(state: str) -> bool:
    return state in TERMINAL
