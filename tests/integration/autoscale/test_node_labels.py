"""A node whose platform names it through the environment (``LAMA_CLEANER_AUTOSCALE_PROVIDER`` and
``..._INSTANCE``, e.g. a pod's name from the downward API) advertises the instance labels through the
autoscale plugin's ``node_labels`` hook, so the autoscaler can match it to its launch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lama_cleaner.plugins.autoscale.labels import INSTANCE_ENV, PROVIDER_ENV
from lama_cleaner.plugins.autoscale.providers.base import LaunchedInstance
from lama_cleaner.plugins.autoscale.tracking import REGISTERED_EVENT, InstanceTracker
from tests.integration.autoscale.conftest import node_with_instance
from tests.support.server_process import REPO_ROOT, server_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_labels_from_the_environment_name_the_instance(scheduler, node_config_file, tmp_path):
    env = server_env({PROVIDER_ENV: "kubernetes", INSTANCE_ENV: "lama-node-gpu-7d9f-x2x"})
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115 - closed below
    node = subprocess.Popen(
        [sys.executable, "-m", "lama_cleaner", "node", "--scheduler", scheduler.control_endpoint, "--queues", "cpu",
         "--device", "cpu", "--config", str(node_config_file), "--plugins", "autoscale", "--labels", "zone=lab",
         "--parent-pid", str(os.getpid())],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        found = wait_for(node_with_instance(scheduler, "lama-node-gpu-7d9f-x2x", "idle"), 90, "the node registered")
        assert found["capabilities"]["labels"] == {
            "zone": "lab",
            "autoscale.provider": "kubernetes",
            "autoscale.instance": "lama-node-gpu-7d9f-x2x",
        }
        tracker = InstanceTracker(register_timeout_s=600)
        tracker.launched([LaunchedInstance("kubernetes", "cpu", None)], now=0.0)  # a pod names itself
        events = tracker.observe(list(scheduler.handle.stats().nodes), 1.0)
        assert [e.kind for e in events] == [REGISTERED_EVENT]
        assert tracker.live()[0].instance.instance_id == "lama-node-gpu-7d9f-x2x"
    finally:
        node.terminate()
        node.wait(30)
        log.close()
