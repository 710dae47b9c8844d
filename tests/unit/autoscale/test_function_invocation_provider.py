"""What ``FunctionInvocationProvider`` gives a function platform's provider, through the smallest one a
third party could write: ``invoke`` hands the call to an in-process platform and ``classify`` reads its
errors. The two shipped subclasses are tested against their real SDKs (``test_aws_lambda_provider.py``,
``tests/integration/autoscale/test_serverless_providers.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lama_cleaner.plugins.autoscale.providers.base import (
    ProviderContext,
    ProviderError,
    ProviderThrottled,
    ProviderTimeout,
)
from lama_cleaner.plugins.autoscale.providers.function_invocation import (
    FunctionInvocationProvider,
    InvocationSettings,
)
from lama_cleaner.plugins.autoscale.serverless.payload import InstancePayload


class Busy(Exception):
    """The platform's "try later"."""


@dataclass
class Platform:
    """A function platform in memory: records each invocation, answers from a script of replies."""

    replies: list[object]
    calls: list[tuple[str, str, str]]

    def invoke(self, function: str, payload: str, key: str) -> int:
        self.calls.append((function, payload, key))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, int)
        return reply


class DemoProvider(FunctionInvocationProvider):
    name = "demo"
    settings_type = InvocationSettings

    def invoke(self, function: str, payload: str, instance_id: str) -> tuple[int, str | None]:
        return self._client.invoke(function, payload, instance_id), f"req-{len(self._client.calls)}"

    def classify(self, exc: Exception, function: str) -> ProviderError:
        if isinstance(exc, Busy):
            return ProviderThrottled(f"invoke {function}: busy", retry_after_s=2.0)
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(f"invoke {function}: timed out")
        return ProviderError(f"invoke {function}: {exc}")


def make(*replies: object, **settings: object) -> tuple[DemoProvider, Platform]:
    platform = Platform(list(replies), [])
    config = InvocationSettings(**{"function": "node-{queue}", "max_concurrency": 3, **settings})  # type: ignore[arg-type]
    return DemoProvider(config, ProviderContext("tcp://127.0.0.1:5570"), platform), platform


def test_each_instance_is_one_invocation_whose_payload_and_key_name_it():
    provider, platform = make(202, 202, idle_timeout_s=30.0)
    launched = provider.start("gpu", 2)
    assert [call[0] for call in platform.calls] == ["node-gpu", "node-gpu"]
    payloads = [InstancePayload.from_json(call[1]) for call in platform.calls]
    ids = [i.instance_id for i in launched]
    assert [p.instance_id for p in payloads] == [call[2] for call in platform.calls] == ids
    assert payloads[0].scheduler == "tcp://127.0.0.1:5570" and payloads[0].queues == ("gpu",)
    assert payloads[0].idle_timeout_s == 30.0
    assert launched[0].detail == {"function": "node-gpu", "request_id": "req-1"}
    assert provider.state() == {
        "function": "node-{queue}",
        "max_concurrency": 3,
        "live": sorted(i.instance_id or "" for i in launched),
        "invoked": 2,
        "throttled": 0,
        "failed": 0,
    }


def test_it_starts_no_more_than_max_concurrency_and_release_frees_room():
    provider, platform = make(202, 202, 202, 202)
    launched = provider.start("cpu", 5)
    assert len(launched) == 3 and len(platform.calls) == 3
    assert provider.capacity("cpu").room == 0 and provider.start("cpu", 1) == []
    provider.release(launched[:1])  # drained: the invocation exits by itself, the provider only forgets it
    assert provider.capacity("cpu").room == 1
    assert len(provider.start("cpu", 1)) == 1 and len(platform.calls) == 4


@pytest.mark.parametrize(
    ("failure", "error_type", "counter"),
    [
        (Busy(), ProviderThrottled, "throttled"),
        (TimeoutError(), ProviderTimeout, "failed"),
        (500, ProviderError, "failed"),
    ],
    ids=["throttled", "timeout", "not-202"],
)
def test_the_first_failure_stops_the_batch_typed_counted_and_carrying_what_started(failure, error_type, counter):
    provider, platform = make(202, failure, 202)
    with pytest.raises(ProviderError) as caught:
        provider.start("cpu", 3)
    assert type(caught.value) is error_type
    assert len(platform.calls) == 2  # nothing invoked after the failure: fallback moves the rest on
    assert [i.instance_id for i in caught.value.launched] == provider.state()["live"]
    assert len(caught.value.launched) == 1
    assert provider.state()[counter] == 1 and provider.state()["invoked"] == 1
    if error_type is ProviderThrottled:
        assert caught.value.retry_after_s == 2.0
    if failure == 500:
        assert "expected 202 for an async invocation, got 500" in str(caught.value)


@pytest.mark.parametrize(
    ("configured", "advertised", "expected"),
    [
        (None, None, "tcp://127.0.0.1:5570"),  # the autoscaler's own address
        (None, "tcp://gw.example.com:15570", "tcp://gw.example.com:15570"),  # scheduler_advertise
        ("tcp://203.0.113.7:5570", "tcp://gw.example.com:15570", "tcp://203.0.113.7:5570"),  # the setting wins
    ],
)
def test_instances_connect_to_the_setting_else_the_advertised_address_else_the_autoscalers(
    configured, advertised, expected
):
    platform = Platform([202], [])
    settings = InvocationSettings(scheduler=configured)
    context = ProviderContext("tcp://127.0.0.1:5570", advertised=advertised)
    DemoProvider(settings, context, platform).start("cpu", 1)
    assert InstancePayload.from_json(platform.calls[0][1]).scheduler == expected
