"""``lama_cleaner.cpu_threads``: who decides how many threads an inference process's math libraries use,
and the share of the cores each of several nodes on one host gets (the autoscaler's ``local``
provider's command line included). The node and its inference process applying it:
``tests/integration/distributed/test_node_threads.py``."""

from __future__ import annotations

import os
import sys

import cv2
import pytest

from lama_cleaner import cpu_threads
from lama_cleaner.cpu_threads import ENV_VARS, host_cpus, limit_threads, share_for, threads_for
from lama_cleaner.plugins.autoscale.providers.base import ProviderContext
from lama_cleaner.plugins.autoscale.providers.local import LocalProvider, LocalSettings


def test_host_cpus_is_what_this_process_may_run_on():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert host_cpus() == expected >= 1


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


@pytest.mark.parametrize(
    ("nodes", "cpus", "expected"),
    [(2, 2, 1), (2, 8, 4), (3, 8, 2), (4, 2, 1), (1, 16, 16), (0, 4, 4)],
)
def test_nodes_started_together_share_the_cores_at_least_one_each(nodes, cpus, expected):
    assert share_for(nodes, 0, {}, cpus=cpus) == expected


def test_no_share_where_the_operator_decided():
    assert share_for(2, 3, {}, cpus=8) is None  # node_threads: each node resolves it, to 3
    assert share_for(2, 0, {"OMP_NUM_THREADS": "2"}, cpus=8) is None  # inherited by each node


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
    assert environ == {name: "1" for name in ENV_VARS}
    assert cv2.getNumThreads() == 1
    torch = sys.modules.get("torch")
    if torch is not None:
        assert torch.get_num_threads() == 1


def _threads_arg(argv: list[str]) -> str | None:
    return argv[argv.index("--threads") + 1] if "--threads" in argv else None


def test_the_local_provider_gives_its_nodes_a_share_beside_the_servers_own(monkeypatch):
    monkeypatch.setattr(cpu_threads, "host_cpus", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    context = ProviderContext(scheduler="tcp://127.0.0.1:5570", host_nodes=1)
    provider = LocalProvider(LocalSettings(max_nodes=3), context)
    assert _threads_arg(provider.command("cpu", "local-a")) == "2"  # 8 cores, 3 + 1 nodes

    # A value in extra_args comes later on the command line, so it wins (argparse keeps the last).
    chosen = LocalProvider(LocalSettings(max_nodes=3, extra_args=["--threads", "5"]), context).command("cpu", "x")
    assert chosen[-2:] == ["--threads", "5"]

    configured = ProviderContext(scheduler="tcp://127.0.0.1:5570", node_threads=3)
    assert _threads_arg(LocalProvider(LocalSettings(), configured).command("cpu", "x")) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _threads_arg(provider.command("cpu", "local-b")) is None
