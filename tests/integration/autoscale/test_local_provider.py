"""The ``local`` provider with real node processes against a real scheduler.

Nodes are started exactly as the autoscaler starts them, register with the labels that name their
instance, leave on their own when drained, and are reaped (or stopped) when released.
"""

from __future__ import annotations

import os
import signal

import pytest

from lama_cleaner.plugins.autoscale.providers.base import ProviderContext
from lama_cleaner.plugins.autoscale.providers.local import LocalProvider, LocalSettings
from tests.integration.autoscale.conftest import node_with_instance, registered_nodes
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

START_S = 60.0  # a node process imports torch and opencv before it says HELLO; this machine is shared


@pytest.fixture
def provider(scheduler, node_config_file):
    context = ProviderContext(scheduler=scheduler.control_endpoint, config_path=str(node_config_file))
    made = LocalProvider(LocalSettings(max_nodes=2, device="cpu", stop_grace_s=2.0), context)
    yield made
    made.close()


def test_started_nodes_register_with_their_instance_labels_and_leave_when_drained(scheduler, provider):
    started = provider.start("cpu", 3)
    assert len(started) == 2  # max_nodes
    assert provider.capacity("cpu").in_use == 2 and provider.capacity("cpu").room == 0
    nodes = [
        wait_for(node_with_instance(scheduler, i.instance_id, "idle"), START_S, "node registered") for i in started
    ]
    for node, inst in zip(nodes, started, strict=True):
        assert node["queues"] == ["cpu"]
        assert node["capabilities"]["labels"] == {"autoscale.provider": "local", "autoscale.instance": inst.instance_id}
        assert node["name"] == inst.instance_id

    first = started[0]
    pid = provider.pid_of(first.instance_id)
    scheduler.drain_node(nodes[0]["id"])
    wait_for(lambda: _exited(pid), 20, "drained node process exits by itself")
    provider.release([first])
    assert provider.capacity("cpu").in_use == 1
    assert {"instance": first.instance_id, "pid": pid, "code": 0} in provider.state()["exited"]
    assert [r["instance"] for r in provider.state()["running"]] == [started[1].instance_id]
    # the other node is untouched and still serving
    assert node_with_instance(scheduler, started[1].instance_id, "idle")()


def test_a_node_still_running_when_released_is_stopped_gracefully(scheduler, provider):
    [inst] = provider.start("cpu", 1)
    wait_for(node_with_instance(scheduler, inst.instance_id, "idle"), START_S, "node registered")
    pid = provider.pid_of(inst.instance_id)
    provider.release([inst])  # not drained, so it stays until exit_wait_s has passed
    assert provider.state()["running"][0]["released"] and not _exited(pid)
    provider.settings.exit_wait_s = 0
    provider.release([inst])  # the wait is over: SIGTERM, the idle node says BYE and exits
    wait_for(lambda: _exited(pid), 20, "the released node exits")
    wait_for(lambda: provider.state()["exited"], 5, "the exit is recorded")
    [record] = provider.state()["exited"]
    assert record["code"] == 0, record
    wait_for(lambda: node_with_instance(scheduler, inst.instance_id, "offline")() or not registered_nodes(scheduler),
             10, "the scheduler sees the node leave")  # fmt: skip


def test_a_killed_node_frees_its_slot_and_forget_reaps_it(scheduler, provider):
    [inst] = provider.start("cpu", 1)
    wait_for(node_with_instance(scheduler, inst.instance_id, "idle"), START_S, "node registered")
    os.kill(provider.pid_of(inst.instance_id), signal.SIGKILL)
    wait_for(lambda: provider.capacity("cpu").in_use == 0, 10, "the dead process no longer counts")
    provider.forget([inst])
    assert provider.state()["running"] == []
    assert provider.state()["exited"][0]["code"] == -signal.SIGKILL


def test_the_command_line_names_the_scheduler_queue_labels_and_exit_on_drain(node_config_file):
    context = ProviderContext(scheduler="tcp://10.0.0.5:5570", config_path=str(node_config_file), plugins=("x.y",))
    settings = LocalSettings(device="cuda:1", extra_args=["--models", "lama"], stop_grace_s=7)
    cmd = LocalProvider(settings, context).command("gpu", "local-abc")
    assert cmd[1:4] == ["-m", "lama_cleaner", "node"]
    pairs = dict(zip(cmd[4::1], cmd[5::1], strict=False))
    assert pairs["--scheduler"] == "tcp://10.0.0.5:5570" and pairs["--queues"] == "gpu"
    assert pairs["--labels"] == "autoscale.provider=local,autoscale.instance=local-abc"
    assert pairs["--parent-pid"] == str(os.getpid()) and pairs["--stop-grace"] == "7"
    assert pairs["--config"] == str(node_config_file) and pairs["--plugins"] == "x.y"
    assert pairs["--device"] == "cuda:1" and cmd[-2:] == ["--models", "lama"]
    assert "--exit-on-drain" in cmd


def _exited(pid: int | None) -> bool:
    """True once ``pid`` is gone or a zombie (exited, not yet reaped by the provider)."""
    if pid is None:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
