"""``lama_cleaner.cpu_threads``: when a thread count is imposed on an inference process's math libraries,
and what nodes started together on one host get (the autoscaler's ``local`` provider's environment
included). The node and its inference process applying them: ``tests/integration/distributed/test_node_threads.py``."""

from __future__ import annotations

import sys

import cv2
import pytest

from lama_cleaner.cpu_threads import COUNT_VARS, describe, limit_threads, shared_host_environment, threads_for
from lama_cleaner.plugins.autoscale.providers.base import ProviderContext
from lama_cleaner.plugins.autoscale.providers.local import LocalProvider, LocalSettings


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        (2, {"OMP_NUM_THREADS": "6"}, 2),  # the node's own setting first
        (0, {"OMP_NUM_THREADS": "6"}, 6),  # then the operator's variable
        (0, {}, None),  # then nobody: the libraries' defaults
        (0, {"OMP_NUM_THREADS": ""}, None),  # empty, zero or garbage count as unset
        (0, {"OMP_NUM_THREADS": "0"}, None),
        (0, {"OMP_NUM_THREADS": "four"}, None),
    ],
)
def test_threads_for(configured, environ, expected):
    assert threads_for(configured, environ) == expected


def test_nodes_sharing_a_host_wait_passively_unless_alone_or_the_operator_chose():
    assert shared_host_environment(2, {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert shared_host_environment(5, {"OMP_NUM_THREADS": "1"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert shared_host_environment(1, {}) == {}  # a lone node: its threads have the cores to themselves
    assert shared_host_environment(0, {}) == {}
    assert shared_host_environment(2, {"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert shared_host_environment(2, {"OMP_WAIT_POLICY": ""}) == {}  # set, even empty: the operator's


def test_describe_names_the_count_and_a_set_policy():
    assert describe(None, {}) == "the math libraries' default threads"
    assert describe(3, {"OMP_WAIT_POLICY": "PASSIVE"}) == "3 thread(s), OMP_WAIT_POLICY=PASSIVE"


@pytest.fixture
def restore_library_threads():
    cv2_before = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    yield
    cv2.setNumThreads(cv2_before)
    if torch is not None:
        torch.set_num_threads(torch_before)


def test_limit_threads_sets_the_environment_opencv_and_a_loaded_pytorch(restore_library_threads):
    environ: dict[str, str] = {"OMP_NUM_THREADS": "12"}
    limit_threads(1, environ)
    assert environ == {name: "1" for name in COUNT_VARS}
    assert cv2.getNumThreads() == 1
    torch = sys.modules.get("torch")
    if torch is not None:
        assert torch.get_num_threads() == 1


def test_the_local_providers_nodes_wait_passively_beside_the_servers_own(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    alone = LocalProvider(LocalSettings(max_nodes=1), ProviderContext(scheduler="tcp://127.0.0.1:5570"))
    assert "OMP_WAIT_POLICY" not in alone._env()
    beside = LocalProvider(LocalSettings(max_nodes=1), ProviderContext(scheduler="tcp://127.0.0.1:5570", host_nodes=1))
    assert beside._env()["OMP_WAIT_POLICY"] == "PASSIVE"
    assert LocalProvider(LocalSettings(max_nodes=3), alone.context)._env()["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert beside._env()["OMP_WAIT_POLICY"] == "ACTIVE"
