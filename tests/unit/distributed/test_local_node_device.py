"""Which ``--device`` the web server's local nodes get.

With ``--device cuda`` lama is routed to the ``gpu`` queue, which only a CUDA node may join; local
nodes that always ran on ``cpu`` left that queue empty and every ``/inpaint`` waited for its 504.
Unset, ``distributed.local_node_device`` now means "the server's device"; a set value still wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from lama_cleaner.config import Config, ConfigError
from lama_cleaner.plugins.config_loader import load_config
from lama_cleaner.plugins.distributed.producer.local_nodes import LocalNodeSupervisor


@pytest.fixture
def supervisors() -> Iterator[list[LocalNodeSupervisor]]:
    made: list[LocalNodeSupervisor] = []
    yield made
    for sup in made:
        sup.stop()  # never started: only removes its temporary folder


def _device_arg(argv: list[str]) -> str:
    return argv[argv.index("--device") + 1]


def _supervisor(made: list[LocalNodeSupervisor], config: Config) -> LocalNodeSupervisor:
    sup = LocalNodeSupervisor(config, "tcp://127.0.0.1:5570")
    made.append(sup)
    return sup


def test_default_follows_the_server_device(supervisors: list[LocalNodeSupervisor]) -> None:
    config = Config(device="cuda")
    assert config.distributed.local_node_device is None
    sup = _supervisor(supervisors, config)
    assert _device_arg(sup.command("local-1")) == "cuda"
    sup._write_config()
    assert json.loads(sup.config_path.read_text())["device"] == "cuda"  # the node's --config agrees

    assert _device_arg(_supervisor(supervisors, Config(device="cpu")).command("local-1")) == "cpu"


def test_an_explicit_local_node_device_wins(supervisors: list[LocalNodeSupervisor]) -> None:
    config = load_config(None, device="cuda", distributed={"local_node_device": "cpu"})
    sup = _supervisor(supervisors, config)
    argv = sup.command("local-1")
    assert _device_arg(argv) == "cpu"
    assert argv[argv.index("--name") + 1] == "local-1"
    sup._write_config()
    assert json.loads(sup.config_path.read_text())["device"] == "cpu"


def test_the_written_node_config_loads_back(supervisors: list[LocalNodeSupervisor]) -> None:
    """The node reads that JSON with the same validating loader: unset must survive the round trip."""
    sup = _supervisor(supervisors, Config(device="cpu"))
    sup._write_config()
    loaded = load_config(sup.config_path)
    assert loaded.device == "cpu" and loaded.distributed.local_node_device is None


def test_an_unknown_local_node_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="distributed.local_node_device"):
        load_config(None, distributed={"local_node_device": "gpu"})
