"""The shipped serverless handler, run for real under a small platform emulator (``platform_emulator.py``).

Each invocation is the AWS Lambda entry point in its own sandbox process with a time limit, killed
at the limit or at any moment the test chooses, with no listening socket in it. The scheduler is
real (a thread with its journal); tasks go through the real producer client to the ``count`` test
model, which records each run once in a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest
import requests

from lama_cleaner.plugins.autoscale.labels import instance_labels
from lama_cleaner.plugins.autoscale.providers.base import LaunchedInstance, ProviderContext
from lama_cleaner.plugins.autoscale.providers.builtin import builtin_provider_classes
from lama_cleaner.plugins.autoscale.serverless.payload import InstancePayload
from lama_cleaner.plugins.autoscale.tracking import NEVER_REGISTERED_EVENT, REGISTERED_EVENT, InstanceTracker
from lama_cleaner.plugins.distributed.producer.client import SchedulerClient
from lama_cleaner.plugins.distributed.wire import protocol as p
from tests.integration.autoscale.cloud_endpoints import CloudEndpoints
from tests.integration.autoscale.conftest import fast_config, node_with_instance
from tests.integration.autoscale.platform_emulator import FunctionPlatform
from tests.integration.distributed.conftest import free_port_block, mask_png, png, task_form
from tests.support.server_process import REPO_ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

START_S = 90.0


@pytest.fixture
def platform(tmp_path, node_config_file):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["LAMA_CLEANER_NODE_CONFIG"] = str(node_config_file)
    env["LAMA_CLEANER_NODE_ARGS"] = "--device cpu --plugins tests.support.fake_models"
    env["LAMA_TEST_COUNT_FILE"] = str(tmp_path / "runs.txt")
    made = FunctionPlatform(env, tmp_path)
    yield made
    made.close()


@pytest.fixture
def client(scheduler, tmp_path):
    made = SchedulerClient(scheduler.control_endpoint, fast_config(tmp_path))
    yield made
    made.close()


def event(scheduler_endpoint: str, instance_id: str, *, idle_s: float, stop_before_s: float = 5.0) -> dict:
    payload = InstancePayload(
        scheduler=scheduler_endpoint,
        queues=("cpu",),
        provider="aws-lambda",
        instance_id=instance_id,
        labels=instance_labels("aws-lambda", instance_id),
        idle_timeout_s=idle_s,
        stop_before_limit_s=stop_before_s,
    )
    return json.loads(payload.to_json())


def submit(client: SchedulerClient, marker: str, ms: int) -> str:
    header = {
        "task": {"kind": "inpaint", "name": "count", "form": task_form(f"{ms} {marker}"), "submitter": None,
                 "idempotency_key": None},
        "blobs": ["image", "mask"],
    }  # fmt: skip
    return client.request(p.SUBMIT, header, [png(), mask_png()]).header["task"]["id"]


def task_status(client: SchedulerClient, task_id: str) -> dict:
    return client.request(p.GET, {"task_id": task_id}).header["task"]


def runs(platform: FunctionPlatform) -> Counter:
    path = platform.env["LAMA_TEST_COUNT_FILE"]
    return Counter(open(path).read().split()) if os.path.exists(path) else Counter()


def test_an_invocation_connects_out_works_idles_out_and_exits(scheduler, platform, client):
    inv = platform.invoke(event(scheduler.control_endpoint, "fn-1", idle_s=3), limit_s=240)
    node = wait_for(node_with_instance(scheduler, "fn-1", "idle"), START_S, "the function's node registered")
    assert node["capabilities"]["labels"] == {"autoscale.provider": "aws-lambda", "autoscale.instance": "fn-1"}
    assert inv.listening_ports() == [], "a function has no address: nothing may listen in it"
    ids = [submit(client, f"m{i}", 200) for i in range(3)]
    wait_for(lambda: all(task_status(client, t)["status"] == "completed" for t in ids), 60, "the tasks ran")
    result = inv.wait(timeout=60)  # idles out 3 s after its last task
    assert result is not None and result["ended"] == "exited" and result["exit_code"] == 0, inv.output()[-3000:]
    assert runs(platform) == Counter({"m0": 1, "m1": 1, "m2": 1})
    assert "no task for" in inv.output() and not inv.killed_at_limit
    gone = wait_for(lambda: not node_with_instance(scheduler, "fn-1", "idle")(), 10, "the node left")
    assert gone and inv.pids() == []


def test_the_time_limit_hands_the_running_task_back(scheduler, platform, client):
    inv = platform.invoke(event(scheduler.control_endpoint, "fn-2", idle_s=120, stop_before_s=10), limit_s=40)
    wait_for(node_with_instance(scheduler, "fn-2", "idle"), START_S, "the function's node registered")
    task = submit(client, "long", 60_000)  # cannot finish within the limit
    wait_for(lambda: task_status(client, task)["status"] == "processing", 20, "the task runs in the function")
    result = inv.wait(timeout=60)
    assert result is not None and result["ended"] == "time_limit" and result["exit_code"] == 0, inv.output()[-3000:]
    assert not inv.killed_at_limit, "the handler returned before the platform had to kill it"
    info = wait_for(lambda: (t := task_status(client, task))["status"] == "queued" and t, 10, "the task re-queued")
    assert runs(platform) == Counter(), "the task never finished in the function"
    assert info["status"] == "queued"


def test_a_sigkill_mid_task_requeues_the_task(scheduler, platform, client):
    inv = platform.invoke(event(scheduler.control_endpoint, "fn-3", idle_s=120), limit_s=240)
    wait_for(node_with_instance(scheduler, "fn-3", "idle"), START_S, "the function's node registered")
    task = submit(client, "doomed", 60_000)
    wait_for(lambda: task_status(client, task)["status"] == "processing", 20, "the task runs in the function")
    inv.kill()  # the platform reclaims the instance: no goodbye, no hand-back
    assert inv.wait(timeout=20) is None
    wait_for(lambda: task_status(client, task)["status"] == "queued", 20, "the lost node's task re-queued")
    assert scheduler.stats().get("requeued_on_node_loss", 0) >= 1
    wait_for(lambda: inv.pids() == [], 10, "nothing of the sandbox survives")


def test_an_instance_that_never_registers_is_detected_and_exits_by_itself(scheduler, platform):
    nowhere = f"tcp://127.0.0.1:{free_port_block(1)}"  # nothing listens: the node can never register
    inv = platform.invoke(event(nowhere, "fn-4", idle_s=4), limit_s=240)
    tracker = InstanceTracker(register_timeout_s=6.0)
    view = scheduler.handle
    tracker.launched([LaunchedInstance("aws-lambda", "cpu", "fn-4")], now=0.0)
    clock = {"t": 0.0}

    def detected() -> bool:
        clock["t"] += 0.5
        events = tracker.observe(list(view.stats().nodes), clock["t"])
        return any(e.kind == NEVER_REGISTERED_EVENT and e.key == "fn-4" for e in events)

    wait_for(detected, 30, "the missing registration detected", interval=0.5)
    assert tracker.abnormal == {"aws-lambda": 1}
    result = inv.wait(timeout=60)  # scale to zero even when lost: it does not bill for ever
    assert result is not None and result["ended"] == "exited", inv.output()[-3000:]


def test_the_lambda_provider_invocation_runs_the_handler_it_names(scheduler, platform, monkeypatch, tmp_path):
    """The chain end to end: the provider invokes through boto3, the platform runs the shipped handler
    with the event that arrived, and the node that registers is the instance that was launched."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    cloud = CloudEndpoints().start()
    try:
        settings = {"endpoint_url": cloud.url, "region": "us-east-1", "idle_timeout_s": 8}
        provider = builtin_provider_classes()["aws-lambda"].from_config(
            settings, ProviderContext(scheduler=scheduler.control_endpoint)
        )
        [launched] = provider.start("cpu", 1)
        [arrived] = cloud.accepted("lambda")
    finally:
        cloud.close()
    inv = platform.invoke(arrived.payload, limit_s=240)
    tracker = InstanceTracker(register_timeout_s=600.0)
    tracker.launched([launched], now=0.0)
    view = scheduler.handle

    def registered() -> bool:
        return any(e.kind == REGISTERED_EVENT for e in tracker.observe(list(view.stats().nodes), 1.0))

    wait_for(registered, START_S, "the launched instance registered")
    [tracked] = tracker.live()
    assert tracked.instance.instance_id == launched.instance_id and tracked.node_id
    result = inv.wait(timeout=60)
    assert result is not None and result["ended"] == "exited" and result["instance_id"] == launched.instance_id


def test_the_function_compute_container_serves_invoke_and_pre_stop(scheduler, platform, client, tmp_path):
    """FC's custom-container contract: ``POST /invoke`` runs one node for the event; ``POST /pre-stop``
    (the instance is about to be reclaimed) makes it hand its task back, and the invocation answers."""
    port = free_port_block(1)
    env = {**platform.env, "FC_SERVER_PORT": str(port), "LAMA_CLEANER_FUNCTION_TIMEOUT_S": "600"}
    log = open(tmp_path / "fc.log", "w+b")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "lama_cleaner.plugins.autoscale.serverless.aliyun_fc"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    answers: list[requests.Response] = []
    try:
        wait_for(lambda: requests.post(f"{base}/pre-stop", timeout=2).json() == {"stopping": 0}, 60, "FC server up")
        assert requests.post(f"{base}/invoke", data=b"{}", timeout=10).status_code == 400
        body = json.dumps(event(scheduler.control_endpoint, "fc-1", idle_s=120, stop_before_s=10)).encode()
        invoking = threading.Thread(
            target=lambda: answers.append(requests.post(f"{base}/invoke", data=body, timeout=120))
        )
        invoking.start()
        wait_for(node_with_instance(scheduler, "fc-1", "idle"), START_S, "the container's node registered")
        task = submit(client, "reclaimed", 60_000)
        wait_for(lambda: task_status(client, task)["status"] == "processing", 20, "the task runs in the container")
        assert requests.post(f"{base}/pre-stop", timeout=10).json() == {"stopping": 1}
        invoking.join(60)
        [answer] = answers
        assert answer.status_code == 200 and answer.json()["ended"] == "stop_requested", answer.text
        wait_for(lambda: task_status(client, task)["status"] == "queued", 10, "the task handed back")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        log.seek(0)
        print(log.read().decode(errors="replace")[-4000:])
        log.close()
