"""retry_policy.py: capped exponential backoff, budget per kind."""

from __future__ import annotations

from lama_cleaner.plugins.distributed.config import RetryConfig
from lama_cleaner.plugins.distributed.scheduler.retry_policy import backoff_delay, next_retry, policy_for


def test_backoff_doubles_and_caps():
    policy = RetryConfig(max_attempts=10, backoff_base_s=0.5, backoff_max_s=3.0)
    assert [backoff_delay(a, policy) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(0, policy) == 0.0
    assert backoff_delay(10_000, policy) == 3.0  # no overflow


def test_next_retry_until_budget_is_spent():
    policy = RetryConfig(max_attempts=3, backoff_base_s=1.0, backoff_max_s=30.0)
    assert next_retry(1, policy, now=100.0) == 101.0
    assert next_retry(2, policy, now=100.0) == 102.0
    assert next_retry(3, policy, now=100.0) is None
    assert next_retry(1, RetryConfig(max_attempts=1), now=0.0) is None
    assert next_retry(1, RetryConfig(max_attempts=0), now=0.0) is None  # 0 behaves like 1


def test_policy_per_kind_with_default():
    special = RetryConfig(max_attempts=7)
    assert policy_for("plugin", {"plugin": special}) is special
    assert policy_for("inpaint", {"plugin": special}).max_attempts == RetryConfig().max_attempts
