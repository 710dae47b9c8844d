"""The ``aws-lambda`` provider through a real boto3 client driven by botocore's own ``Stubber``."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from lama_cleaner.plugins.autoscale.providers.aws_lambda import AwsLambdaProvider, LambdaSettings
from lama_cleaner.plugins.autoscale.providers.base import ProviderContext, ProviderError, ProviderThrottled
from lama_cleaner.plugins.autoscale.serverless.payload import InstancePayload


@pytest.fixture
def client():
    return boto3.session.Session().client(
        "lambda", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


def make(client, **settings) -> AwsLambdaProvider:
    base = dict(function="lama-node-{queue}", max_concurrency=3, scheduler="tcp://203.0.113.7:5570")
    return AwsLambdaProvider(LambdaSettings(**{**base, **settings}), ProviderContext("tcp://127.0.0.1:5570"), client)


def invoke_params(function: str = "lama-node-cpu", **extra) -> dict:
    return {"FunctionName": function, "InvocationType": "Event", "Payload": ANY, **extra}


def test_each_instance_is_one_async_invocation_with_a_payload_naming_the_scheduler(client):
    provider = make(client, qualifier="live", idle_timeout_s=45)
    sent: list[bytes] = []
    client.meta.events.register(
        "before-parameter-build.lambda.Invoke", lambda params, **_: sent.append(params["Payload"])
    )
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_response("invoke", {"StatusCode": 202}, invoke_params(Qualifier="live"))
        launched = provider.start("cpu", 2)
        stub.assert_no_pending_responses()
    assert [i.provider for i in launched] == ["aws-lambda", "aws-lambda"]
    payloads = [InstancePayload.from_json(body) for body in sent]
    assert [p.instance_id for p in payloads] == [i.instance_id for i in launched]
    first = payloads[0]
    assert first.scheduler == "tcp://203.0.113.7:5570" and first.queues == ("cpu",) and first.idle_timeout_s == 45
    assert first.labels == {"autoscale.provider": "aws-lambda", "autoscale.instance": launched[0].instance_id}
    assert provider.capacity("cpu").in_use == 2 and provider.capacity("cpu").room == 1


def test_throttling_is_typed_with_retry_after_and_keeps_the_instances_started_before_it(client):
    provider = make(client)
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 202}, invoke_params())
        stub.add_client_error(
            "invoke",
            service_error_code="TooManyRequestsException",
            service_message="Rate Exceeded.",
            http_status_code=429,
            modeled_fields={"retryAfterSeconds": "12", "Reason": "ConcurrentInvocationLimitExceeded", "Type": "User",
                            "message": "Rate Exceeded."},
        )  # fmt: skip
        with pytest.raises(ProviderThrottled) as caught:
            provider.start("cpu", 3)
        stub.assert_no_pending_responses()
    exc = caught.value
    assert exc.retry_after_s == 12.0 and len(exc.launched) == 1
    assert (
        str(exc) == "invoke lama-node-cpu: TooManyRequestsException: Rate Exceeded. (ConcurrentInvocationLimitExceeded)"
    )
    assert provider.state()["throttled"] == 1 and provider.state()["invoked"] == 1
    assert provider.state()["live"] == [exc.launched[0].instance_id]


@pytest.mark.parametrize(
    ("code", "status"),
    [("ServiceException", 500), ("ResourceNotFoundException", 404), ("ResourceConflictException", 409)],
)
def test_service_errors_are_provider_errors(client, code, status):
    provider = make(client)
    with Stubber(client) as stub:
        stub.add_client_error("invoke", service_error_code=code, service_message="nope", http_status_code=status)
        with pytest.raises(ProviderError) as caught:
            provider.start("cpu", 1)
    assert type(caught.value) is ProviderError
    assert str(caught.value) == f"invoke lama-node-cpu: {code}: nope"
    assert provider.capacity("cpu").in_use == 0


def test_a_non_202_answer_is_an_error(client):
    provider = make(client)
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 200}, invoke_params())
        with pytest.raises(ProviderError, match="expected 202 for an async invocation, got 200"):
            provider.start("cpu", 1)


def test_capacity_is_never_exceeded_and_forgetting_frees_it(client):
    provider = make(client, max_concurrency=2)
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_response("invoke", {"StatusCode": 202}, invoke_params())
        launched = provider.start("cpu", 5)
        stub.assert_no_pending_responses()
    assert len(launched) == 2 and provider.start("cpu", 1) == []
    provider.release(launched[:1])
    provider.forget(launched[1:])
    assert provider.capacity("cpu").in_use == 0


def test_the_payload_round_trips_and_refuses_garbage():
    payload = InstancePayload("tcp://h:1", ("gpu",), "p", "i", {"a": "b"}, 30.0)
    assert InstancePayload.from_json(payload.to_json()) == payload
    for bad in (b"{}", json.dumps({"kind": "lama-cleaner-node", "version": 2}).encode(),
                json.dumps({"kind": "lama-cleaner-node", "version": 1, "scheduler": "h:1", "queues": ["q"],
                            "provider": "p", "instance_id": "i"}).encode()):  # fmt: skip
        with pytest.raises(ValueError):
            InstancePayload.from_json(bad)
