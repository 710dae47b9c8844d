"""When a failed attempt may run again: capped exponential backoff, per task kind.

Pure functions of (attempts so far, policy, clock), so the scheduler's retry decisions are tested
without sockets or time passing.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import RetryConfig


def policy_for(kind: str, policies: Mapping[str, RetryConfig]) -> RetryConfig:
    """The policy of ``kind`` (``inpaint``/``plugin``); the default policy for a kind not configured."""
    return policies.get(kind) or RetryConfig()


def backoff_delay(attempts: int, policy: RetryConfig) -> float:
    """Delay before attempt ``attempts + 1``: base, 2*base, 4*base, ... capped at ``backoff_max_s``."""
    if attempts < 1:
        return 0.0
    exponent = min(attempts - 1, 62)  # avoid float overflow on absurd attempt counts
    return max(0.0, min(policy.backoff_max_s, policy.backoff_base_s * (2.0**exponent)))


def next_retry(attempts: int, policy: RetryConfig, now: float) -> float | None:
    """``not_before`` for the next attempt, or None when ``attempts`` used up the budget.

    ``attempts`` counts the attempts already made, including the one that just failed.
    """
    if attempts >= max(1, policy.max_attempts):
        return None
    return now + backoff_delay(attempts, policy)
