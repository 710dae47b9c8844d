"""fallback.py: the health state machine over an injected time, and the walk along a queue's providers."""

from __future__ import annotations

from lama_cleaner.plugins.autoscale.fallback import (
    DEGRADED,
    HEALTHY,
    ProviderHealth,
    headroom,
    start_with_fallback,
)
from lama_cleaner.plugins.autoscale.providers.base import (
    LaunchedInstance,
    ProviderError,
    ProviderThrottled,
    ProviderTimeout,
)
from tests.unit.autoscale.stub_provider import StubProvider


def test_a_failure_degrades_with_doubling_backoff_and_a_success_recovers():
    health = ProviderHealth(retry_min_s=30, retry_max_s=100)
    assert health.usable("cloud", 0.0)
    event = health.failed("cloud", 0.0, "throttled: slow down", kind="throttled")
    assert (event.kind, event.reason, event.retry_at) == ("degraded", "throttled: slow down", 30.0)
    assert not health.usable("cloud", 29.9) and health.usable("cloud", 30.0)
    assert health.failed("cloud", 30.0, "timeout: no answer", kind="timeout").retry_at == 90.0  # 60 s
    assert health.failed("cloud", 90.0, "error: 500").retry_at == 190.0  # capped at 100 s
    rec = health.record("cloud")
    assert (rec.status, rec.since, rec.failures, rec.errors) == (DEGRADED, 0.0, 3, 3)
    assert rec.by_kind == {"throttled": 1, "timeout": 1, "error": 1}
    recovered = health.succeeded("cloud", 200.0)
    assert recovered is not None and recovered.kind == "recovered"
    assert recovered.reason == "recovered after 200 s degraded (error: 500)"
    assert (rec.status, rec.failures, rec.errors) == (HEALTHY, 0, 3)
    assert health.succeeded("cloud", 201.0) is None  # already healthy: no event
    assert health.failed("cloud", 300.0, "again").retry_at == 330.0  # backoff starts over


def test_a_platform_retry_after_longer_than_the_backoff_is_honoured():
    health = ProviderHealth(retry_min_s=5, retry_max_s=60)
    assert health.failed("cloud", 0.0, "throttled", retry_after_s=45).retry_at == 45.0
    assert health.failed("cloud", 100.0, "throttled", retry_after_s=1).retry_at == 110.0  # backoff wins


def test_an_error_count_does_not_degrade():
    health = ProviderHealth(30, 600)
    event = health.count_error("cloud", 5.0, "instance vanished", kind="vanished")
    assert event.kind == "error"
    assert health.usable("cloud", 5.0) and health.record("cloud").errors == 1


def test_capacity_falls_back_along_the_queue_list_and_returns_after_recovery():
    health = ProviderHealth(retry_min_s=30, retry_max_s=600)
    cloud, local = StubProvider("cloud"), StubProvider("local", limit=4)
    cloud.fail_next = [ProviderThrottled("TooManyRequestsException: Rate Exceeded", retry_after_s=10)]

    result = start_with_fallback("gpu", 2, [cloud, local], health, now=0.0)
    assert result.per_provider == {"local": 2} and result.shortfall == 0
    assert [e.kind for e in result.events] == ["degraded"]
    assert result.errors == ["cloud: throttled: TooManyRequestsException: Rate Exceeded"]

    result = start_with_fallback("gpu", 1, [cloud, local], health, now=10.0)  # cloud still backing off
    assert result.per_provider == {"local": 1} and cloud.starts() == [("gpu", 2)]

    result = start_with_fallback("gpu", 2, [cloud, local], health, now=30.0)  # retry time: cloud first again
    assert result.per_provider == {"cloud": 2}
    assert [(e.kind, e.provider) for e in result.events] == [("recovered", "cloud")]


def test_a_partly_successful_start_keeps_what_started_and_asks_the_next_for_the_rest():
    health = ProviderHealth(30, 600)
    cloud, local = StubProvider("cloud"), StubProvider("local")
    first = LaunchedInstance("cloud", "gpu", "cloud-a")
    cloud.fail_next = [ProviderTimeout("read timeout after 10 s", launched=[first])]
    result = start_with_fallback("gpu", 3, [cloud, local], health, now=0.0)
    assert result.launched[0] == first
    assert result.per_provider == {"cloud": 1, "local": 2}
    assert local.starts() == [("gpu", 2)]


def test_full_providers_are_skipped_and_the_rest_is_a_shortfall():
    health = ProviderHealth(30, 600)
    small, local = StubProvider("small", limit=1), StubProvider("local", limit=1)
    result = start_with_fallback("gpu", 5, [small, local], health, now=0.0)
    assert result.per_provider == {"small": 1, "local": 1} and result.shortfall == 3
    result = start_with_fallback("gpu", 1, [small, local], health, now=1.0)
    assert result.per_provider == {} and result.shortfall == 1 and result.events == []
    assert small.starts() == [("gpu", 1)]  # a full provider is not even asked


def test_an_unexpected_exception_in_a_provider_degrades_it_and_the_walk_goes_on():
    health = ProviderHealth(30, 600)
    broken, local = StubProvider("broken"), StubProvider("local")
    broken.fail_next = [KeyError("boom")]  # type: ignore[list-item]
    result = start_with_fallback("gpu", 1, [broken, local], health, now=0.0)
    assert result.per_provider == {"local": 1}
    assert result.errors == ["broken: error: KeyError: 'boom'"]


def test_headroom_sums_the_usable_providers_and_degrades_one_whose_query_fails():
    health = ProviderHealth(30, 600)
    a, b, c = StubProvider("a", limit=3), StubProvider("b", limit=2), StubProvider("c", limit=None)
    assert headroom("gpu", [a, b], health, 0.0) == (5, [])
    assert headroom("gpu", [a, c], health, 0.0) == (None, [])
    b.capacity_error = ProviderError("cannot read the deployment")
    room, events = headroom("gpu", [a, b], health, 0.0)
    assert room == 3 and [e.kind for e in events] == ["degraded"]
    assert headroom("gpu", [a, b], health, 1.0) == (3, [])  # degraded: not asked again before its retry time
    assert len(b.calls) == 2
