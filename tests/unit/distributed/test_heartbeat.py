"""``wire.liveness.Backoff`` and ``wire.liveness.Liveness``: the arithmetic behind "reconnect with exponential
backoff" and "a peer silent for interval x liveness is gone", driven by an injected clock (no sleeping).

The node and the producer rely on exactly these rules (node/agent.py: ``_disconnect`` takes
``Backoff.next_delay()``, WELCOME calls ``Backoff.reset()``; both loops test ``Liveness.expired``), and
tests/integration/distributed/test_node_backoff.py checks that the real node process follows them.
"""

from __future__ import annotations

import pytest

from lama_cleaner.plugins.distributed.wire.liveness import Backoff, Liveness


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


# ---------------------------------------------------------------------- Backoff
def test_backoff_starts_at_the_minimum_and_doubles():
    assert delays(Backoff(0.25, 100.0), 5) == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_backoff_is_capped_at_the_maximum_and_stays_there():
    # 0.25 s doubling to a 16 s cap: the configuration defaults of reconnect_min_s / reconnect_max_s.
    got = delays(Backoff(0.25, 16.0), 10)
    assert got == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0, 16.0]


def test_a_cap_that_is_not_a_power_of_two_multiple_is_reached_exactly():
    assert delays(Backoff(0.1, 0.5), 5) == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_reset_starts_over_from_the_minimum():
    backoff = Backoff(0.1, 10.0)
    delays(backoff, 6)
    backoff.reset()
    assert delays(backoff, 3) == pytest.approx([0.1, 0.2, 0.4])


def test_reset_at_any_point_gives_the_same_sequence_as_a_fresh_backoff():
    used = Backoff(0.3, 5.0)
    delays(used, 2)
    used.reset()
    assert delays(used, 8) == delays(Backoff(0.3, 5.0), 8)


def test_without_jitter_the_sequence_is_deterministic():
    """The default is a plain doubling: two backoffs with the same bounds agree delay for delay."""
    assert delays(Backoff(0.2, 3.0), 12) == delays(Backoff(0.2, 3.0), 12)


def test_jitter_shortens_each_delay_by_at_most_its_fraction_and_keeps_the_doubling():
    plain = delays(Backoff(0.2, 3.0), 8)
    longest = delays(Backoff(0.2, 3.0, jitter=0.1, rng=lambda: 0.0), 8)
    shortest = delays(Backoff(0.2, 3.0, jitter=0.1, rng=lambda: 1.0), 8)
    assert longest == plain  # rng 0: no shortening
    assert shortest == pytest.approx([d * 0.9 for d in plain])  # rng 1: the whole 10%
    halfway = delays(Backoff(0.2, 3.0, jitter=0.1, rng=lambda: 0.5), 8)
    assert halfway == pytest.approx([d * 0.95 for d in plain])


def test_two_jittered_backoffs_spread_out():
    """What jitter is for: nodes that lost the scheduler together do not retry in lockstep."""
    import random

    a = delays(Backoff(1.0, 16.0, jitter=0.1, rng=random.Random(1).random), 6)
    b = delays(Backoff(1.0, 16.0, jitter=0.1, rng=random.Random(2).random), 6)
    assert a != b


def test_a_zero_minimum_retries_at_once_then_still_grows():
    """``max(next * 2, 0.01)``: without that floor a zero minimum would retry in a tight loop forever."""
    got = delays(Backoff(0.0, 0.05), 5)
    assert got[0] == 0.0
    assert got[1:] == pytest.approx([0.01, 0.02, 0.04, 0.05])


def test_bad_bounds_are_clamped():
    negative = Backoff(-1.0, 2.0)
    assert negative.minimum == 0.0
    inverted = Backoff(3.0, 1.0)  # a maximum below the minimum: the minimum wins
    assert inverted.maximum == 3.0
    assert delays(inverted, 3) == [3.0, 3.0, 3.0]


def test_delays_never_decrease_and_never_exceed_the_cap():
    got = delays(Backoff(0.07, 2.5), 30)
    assert all(0.07 <= d <= 2.5 for d in got)
    assert got == sorted(got)


# ---------------------------------------------------------------------- Liveness
def test_a_fresh_liveness_sends_a_heartbeat_at_once_then_every_interval():
    clock = FakeClock()
    live = Liveness(1.0, 3, clock=clock)
    assert live.due() is True
    assert live.due() is False  # re-armed by the first call
    assert live.time_to_next() == pytest.approx(1.0)
    clock.advance(0.999)
    assert live.due() is False
    assert live.time_to_next() == pytest.approx(0.001)
    clock.advance(0.001)  # exactly the interval: due (>=)
    assert live.due() is True
    assert live.time_to_next() == pytest.approx(1.0)


def test_time_to_next_is_never_negative_when_a_heartbeat_is_overdue():
    clock = FakeClock()
    live = Liveness(0.5, 3, clock=clock)
    live.due()
    clock.advance(7.0)
    assert live.time_to_next() == 0.0
    assert live.due() is True
    assert live.time_to_next() == pytest.approx(0.5)  # re-armed from now, not from the missed slot


def test_peer_expires_only_after_more_than_interval_times_liveness():
    clock = FakeClock()
    live = Liveness(0.25, 4, clock=clock)  # binary fractions: "exactly the window" is exact in floats
    clock.advance(1.0)  # exactly the window: still alive
    assert live.expired is False
    clock.advance(0.001)
    assert live.expired is True


def test_any_sign_of_life_restarts_the_window():
    clock = FakeClock()
    live = Liveness(1.0, 3, clock=clock)
    for _ in range(10):  # a peer heard every 2.5 s never expires with a 3 s window
        clock.advance(2.5)
        assert live.expired is False
        live.seen()
    clock.advance(3.5)
    assert live.expired is True
    live.seen()
    assert live.expired is False


def test_reset_gives_a_new_connection_a_whole_window_and_an_immediate_heartbeat():
    clock = FakeClock()
    live = Liveness(1.0, 2, clock=clock)
    live.due()
    clock.advance(5.0)  # a dead connection
    assert live.expired is True
    live.reset()
    assert live.expired is False
    assert live.due() is True
    clock.advance(2.0)
    assert live.expired is False
    clock.advance(0.01)
    assert live.expired is True


def test_configure_adopts_the_peers_values_without_resetting_the_timers():
    clock = FakeClock()
    live = Liveness(1.0, 3, clock=clock)
    live.due()
    clock.advance(0.5)
    live.configure(0.1, 2)  # WELCOME: interval 0.1 s, liveness 2 -> a 0.2 s window
    assert (live.interval_s, live.liveness) == (0.1, 2)
    assert live.expired is True  # last_seen was 0.5 s ago: not moved by configure
    assert live.time_to_next() == pytest.approx(0.5)  # next_send kept too
    clock.advance(0.5)
    assert live.due() is True
    assert live.time_to_next() == pytest.approx(0.1)  # from now on, the new interval


def test_configure_clamps_nonsense_values():
    live = Liveness(0.0, 0, clock=FakeClock())
    assert live.interval_s == 0.01  # a zero interval would make every loop turn send a heartbeat
    assert live.liveness == 1
    live.configure(-5, -1)
    assert (live.interval_s, live.liveness) == (0.01, 1)


def test_the_default_clock_is_monotonic():
    """No injected clock: the real ``time.monotonic`` (a wall-clock jump must not expire a peer)."""
    import time

    assert Liveness(1.0, 3).clock is time.monotonic
