"""states.py: the transition table is the contract's state machine, and terminal states are final."""

from __future__ import annotations

import itertools

import pytest

from lama_cleaner.plugins.distributed.journal import states as s
from lama_cleaner.tasks import TASK_STATES, TERMINAL_STATES


def test_states_match_the_task_api():
    assert set(s.STATES) == set(TASK_STATES)
    assert s.TERMINAL == TERMINAL_STATES


@pytest.mark.parametrize(
    ("current", "event", "new"),
    [
        ("queued", "dispatch", "processing"),
        ("queued", "cancel", "cancelled"),
        ("processing", "complete", "completed"),
        ("processing", "fail", "failed"),
        ("processing", "retry", "queued"),
        ("processing", "recover", "queued"),
        ("processing", "cancel", "cancelled"),
        ("queued", "complete", "completed"),
    ],
)
def test_legal_moves(current, event, new):
    assert s.transition(current, event) == new
    assert s.can(current, event)


def test_terminal_states_never_change():
    for state, event in itertools.product(s.TERMINAL, s.EVENTS):
        with pytest.raises(s.IllegalTransition):
            s.transition(state, event)
        assert s.is_terminal(state)


@pytest.mark.parametrize(("current", "event"), [("queued", "retry"), ("queued", "recover"), ("processing", "dispatch")])
def test_illegal_moves_raise(current, event):
    with pytest.raises(s.IllegalTransition, match=event):
        s.transition(current, event)


def test_unknown_state_or_event_is_illegal():
    with pytest.raises(s.IllegalTransition):
        s.transition("lost", "dispatch")
    with pytest.raises(s.IllegalTransition):
        s.transition("queued", "explode")
