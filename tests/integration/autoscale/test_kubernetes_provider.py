"""The ``kubernetes`` provider through the official client against a real HTTP stand-in of the API server.

The stand-in plays the ReplicaSet (it deletes pods in Kubernetes' documented order when replicas
drop), so these tests show that scale-in removes exactly the drained pods and no busy one.
"""

from __future__ import annotations

import socket

import pytest

from lama_cleaner.plugins.autoscale.providers.base import (
    LaunchedInstance,
    ProviderContext,
    ProviderError,
    ProviderThrottled,
    ProviderTimeout,
)
from lama_cleaner.plugins.autoscale.providers.kubernetes import (
    DELETION_COST,
    LOWEST_COST,
    KubernetesProvider,
    KubernetesSettings,
)
from tests.integration.autoscale.kube_apiserver import FakeApiServer

SCALE = "/apis/apps/v1/namespaces/lama/deployments/lama-node-gpu/scale"


@pytest.fixture
def apiserver():
    server = FakeApiServer(namespace="lama").start()
    server.add_deployment("lama-node-gpu", replicas=1)
    yield server
    server.close()


def make_provider(url: str, **overrides) -> KubernetesProvider:
    settings = KubernetesSettings(
        namespace="lama", deployment="lama-node-{queue}", max_replicas=4, host=url, request_timeout_s=2.0
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    return KubernetesProvider(settings, ProviderContext(scheduler="tcp://10.0.0.1:5570"))


def test_capacity_and_scale_out_go_through_the_scale_subresource(apiserver):
    provider = make_provider(apiserver.url)
    cap = provider.capacity("gpu")
    assert (cap.limit, cap.in_use, cap.room) == (4, 1, 3)
    apiserver.requests.clear()
    launched = provider.start("gpu", 5)
    assert [(i.provider, i.queue, i.instance_id) for i in launched] == [("kubernetes", "gpu", None)] * 3  # capped at 4
    assert apiserver.requests == [
        ("GET", SCALE, None),
        ("PATCH", SCALE, {"metadata": {"resourceVersion": "2"}, "spec": {"replicas": 4}}),
    ]
    assert len(apiserver.pods_of("lama-node-gpu")) == 4
    assert provider.state()["deployments"] == {"lama-node-gpu": {"replicas": 4, "ready": 1}}
    assert provider.start("gpu", 1) == []  # at max_replicas: read, nothing written
    assert apiserver.requests[-1] == ("GET", SCALE, None)


def test_scale_in_removes_exactly_the_drained_pods(apiserver):
    provider = make_provider(apiserver.url)
    provider.start("gpu", 3)
    pods = apiserver.pods_of("lama-node-gpu")
    drained = [pods[1], pods[2]]  # idle and drained; pods[0] and pods[3] are busy
    apiserver.requests.clear()
    provider.release([LaunchedInstance("kubernetes", "gpu", name) for name in drained])
    lowest = {"metadata": {"annotations": {DELETION_COST: LOWEST_COST}}}
    assert apiserver.requests == [
        ("PATCH", f"/api/v1/namespaces/lama/pods/{drained[0]}", lowest),
        ("PATCH", f"/api/v1/namespaces/lama/pods/{drained[1]}", lowest),
        ("GET", SCALE, None),
        ("PATCH", SCALE, {"metadata": {"resourceVersion": "3"}, "spec": {"replicas": 2}}),
    ]
    assert apiserver.pods_of("lama-node-gpu") == [pods[0], pods[3]]  # the busy ones stay


def test_a_concurrent_change_is_re_read_not_overwritten(apiserver):
    provider = make_provider(apiserver.url)
    apiserver.requests.clear()
    apiserver.meddle_before_next_patch = 1  # someone else adds a replica between our read and our write
    assert len(provider.start("gpu", 1)) == 1
    assert [m for m, _, _ in apiserver.requests] == ["GET", "PATCH", "GET", "PATCH"]  # 409, then a fresh read
    assert apiserver.deployments["lama-node-gpu"].replicas == 3  # theirs kept, ours added


def test_a_drained_pod_already_gone_still_lowers_replicas(apiserver):
    provider = make_provider(apiserver.url)
    provider.start("gpu", 1)
    apiserver.requests.clear()
    provider.release([LaunchedInstance("kubernetes", "gpu", "lama-node-gpu-gone")])
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _ in apiserver.requests] == [
        ("PATCH", "lama-node-gpu-gone"),
        ("GET", "scale"),
        ("PATCH", "scale"),
    ]
    assert apiserver.deployments["lama-node-gpu"].replicas == 1


def test_throttling_errors_and_timeouts_are_typed(apiserver):
    provider = make_provider(apiserver.url)
    apiserver.fail_next = [(429, "TooManyRequests", {"Retry-After": "7"})]
    with pytest.raises(ProviderThrottled) as throttled:
        provider.start("gpu", 1)
    assert throttled.value.retry_after_s == 7.0 and "HTTP 429" in str(throttled.value)
    apiserver.fail_next = [(403, "Forbidden", {})]
    with pytest.raises(ProviderError, match="cannot read the scale of deployment lama/lama-node-gpu: HTTP 403"):
        provider.capacity("gpu")
    with pytest.raises(ProviderError, match="HTTP 404"):
        provider.capacity("cpu")  # no such deployment

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (backlog) but never answers
    try:
        slow = make_provider(f"http://127.0.0.1:{silent.getsockname()[1]}", request_timeout_s=0.3)
        with pytest.raises(ProviderTimeout, match="timed out"):
            slow.capacity("gpu")
    finally:
        silent.close()

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with pytest.raises(ProviderError, match="cannot read the scale"):
        make_provider(f"http://127.0.0.1:{port}").capacity("gpu")
