"""``aws-lambda`` and ``aliyun-fc`` through their real SDKs over real HTTP to local stand-ins of the invoke APIs.

The SDK clients are built by the providers themselves from their settings (endpoint, protocol,
timeouts, no SDK retries) and credentials from the environment, as in production.
"""

from __future__ import annotations

import socket
import time

import pytest

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.autoscale.providers.aliyun_fc import AliyunFcProvider
from lama_cleaner.plugins.autoscale.providers.aws_lambda import AwsLambdaProvider
from lama_cleaner.plugins.autoscale.providers.base import (
    ProviderContext,
    ProviderError,
    ProviderThrottled,
    ProviderTimeout,
)
from tests.integration.autoscale.cloud_endpoints import CloudEndpoints

CONTEXT = ProviderContext(scheduler="tcp://198.51.100.4:5570")


@pytest.fixture
def cloud(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "test")
    endpoints = CloudEndpoints().start()
    yield endpoints
    endpoints.close()


def lambda_provider(url: str, **settings) -> AwsLambdaProvider:
    table = {"function": "lama-{queue}", "region": "eu-west-1", "endpoint_url": url, "max_concurrency": 4,
             "read_timeout_s": 1.0, "connect_timeout_s": 1.0, **settings}  # fmt: skip
    return AwsLambdaProvider.from_config(table, CONTEXT)


def fc_provider(host: str, **settings) -> AliyunFcProvider:
    table = {"endpoint": host, "protocol": "http", "function": "lama-{queue}", "region": "cn-hangzhou",
             "max_concurrency": 4, "read_timeout_s": 1.0, "connect_timeout_s": 1.0, **settings}  # fmt: skip
    return AliyunFcProvider.from_config(table, CONTEXT)


def test_lambda_invokes_asynchronously_over_http(cloud):
    provider = lambda_provider(cloud.url)
    launched = provider.start("cpu", 2)
    assert len(launched) == 2
    calls = cloud.accepted("lambda")
    assert [(c.function, c.invocation_type) for c in calls] == [("lama-cpu", "Event")] * 2
    assert [c.payload["instance_id"] for c in calls] == [i.instance_id for i in launched]
    assert calls[0].payload["scheduler"] == "tcp://198.51.100.4:5570" and calls[0].payload["queues"] == ["cpu"]
    assert launched[0].detail["request_id"] == "req-1"


def test_lambda_throttling_errors_and_timeouts_over_http(cloud):
    provider = lambda_provider(cloud.url)
    cloud.script("lambda", 429, "TooManyRequestsException", "Rate Exceeded.", **{"Retry-After": "9"})
    with pytest.raises(ProviderThrottled) as throttled:
        provider.start("cpu", 1)
    assert throttled.value.retry_after_s == 9.0
    assert "TooManyRequestsException: Rate Exceeded. (ReservedFunctionConcurrentInvocationLimitExceeded)" in str(
        throttled.value
    )
    assert len([i for i in cloud.invocations if i.answered == 429]) == 1  # the SDK did not retry it
    cloud.script("lambda", 500, "ServiceException", "internal")
    with pytest.raises(ProviderError, match="ServiceException: internal"):
        provider.start("cpu", 1)
    with _silent_port() as port:
        silent = lambda_provider(f"http://127.0.0.1:{port}", read_timeout_s=0.3)  # building the client is slow
        began = time.monotonic()
        with pytest.raises(ProviderTimeout):
            silent.start("cpu", 1)
        assert time.monotonic() - began < 2.0  # one attempt, no SDK retries (5 attempts would take >= 1.5 s + backoff)


def test_function_compute_invokes_asynchronously_with_our_task_id(cloud):
    provider = fc_provider(cloud.host, qualifier="prod")
    launched = provider.start("gpu", 3)
    calls = cloud.accepted("fc")
    assert [(c.function, c.invocation_type) for c in calls] == [("lama-gpu", "Async")] * 3
    assert [c.task_id for c in calls] == [i.instance_id for i in launched]  # FC's idempotency key
    assert calls[0].payload["provider"] == "aliyun-fc" and calls[0].payload["queues"] == ["gpu"]
    assert provider.capacity("gpu").room == 1


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "ResourceExhausted", ProviderThrottled),
        (503, "ResourceThrottled", ProviderThrottled),
        (500, "InternalError", ProviderError),
        (404, "FunctionNotFound", ProviderError),
    ],
)
def test_function_compute_errors_are_typed(cloud, status, code, expected):
    provider = fc_provider(cloud.host)
    cloud.script("fc", status, code, "refused")
    with pytest.raises(ProviderError) as caught:
        provider.start("gpu", 1)
    assert type(caught.value) is expected
    assert str(caught.value) == f"invoke lama-gpu: HTTP {status} {code}: refused"


def test_function_compute_retry_after_and_timeouts(cloud):
    provider = fc_provider(cloud.host)
    cloud.script("fc", 429, "Throttling.User", "slow down", **{"x-acs-retry-after": "4000"})
    with pytest.raises(ProviderThrottled) as throttled:
        provider.start("gpu", 1)
    assert throttled.value.retry_after_s == 4.0  # the SDK reports milliseconds
    with _silent_port() as port:
        silent = fc_provider(f"127.0.0.1:{port}", read_timeout_s=0.3)  # built before the clock starts
        began = time.monotonic()
        with pytest.raises(ProviderTimeout, match="timed out"):
            silent.start("gpu", 1)
        assert time.monotonic() - began < 2.0  # one attempt, no SDK retries
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ProviderError, match="invoke lama-gpu: ") as refused:
        fc_provider(f"127.0.0.1:{port}").start("gpu", 1)
    assert type(refused.value) is ProviderError
    with pytest.raises(ConfigError, match="autoscale.providers.aliyun-fc.endpoint is required"):
        AliyunFcProvider.from_config({}, CONTEXT)
    with pytest.raises(ConfigError, match="unknown setting autoscale.providers.aliyun-fc.secret"):
        AliyunFcProvider.from_config({"endpoint": "x", "secret": "no"}, CONTEXT)


class _silent_port:
    """A port that accepts connections (into the backlog) and never answers: a hung endpoint."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
