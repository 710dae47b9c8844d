"""Fixtures: a real scheduler thread (ephemeral ports, tmp journal) and a config file for real node processes.

The scheduler class is imported in one place (:func:`scheduler_class`), lazily, so a move of the
distributed plugin's modules is a one-line change here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lama_cleaner.config import Config


def scheduler_class() -> Any:
    from lama_cleaner.plugins.distributed.scheduler.service import Scheduler

    return Scheduler


def fast_config(tmp_path: Path) -> Config:
    """A CPU deployment with short heartbeats, so node loss and drains show up within a second."""
    cfg = Config()
    cfg.device = "cpu"
    cfg.model = "cv2"
    cfg.distributed.scheduler_bind = "tcp://127.0.0.1:0"
    cfg.distributed.data_dir = str(tmp_path / "journal")
    cfg.distributed.heartbeat_interval_s = 0.25
    cfg.distributed.heartbeat_liveness = 4
    cfg.distributed.reconnect_min_s = 0.1
    cfg.distributed.reconnect_max_s = 0.5
    return cfg


@pytest.fixture
def scheduler(tmp_path) -> Iterator[Any]:
    """A started scheduler for queues ``gpu`` and ``cpu`` (every task kind routed to ``cpu``)."""
    sched = scheduler_class()(fast_config(tmp_path), lambda kind, name: "cpu")
    sched.start()
    yield sched
    sched.stop()
    assert sched.join(10), "scheduler thread did not stop"


@pytest.fixture
def node_config_file(tmp_path) -> Path:
    """The effective config nodes get (``--config``), as the autoscale plugin writes it for local nodes."""
    path = tmp_path / "node-config.json"
    data = fast_config(tmp_path).to_dict()
    data["plugins"] = []
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def registered_nodes(sched: Any) -> list[dict[str, Any]]:
    """The scheduler's node list (id, state, labels, ...) as it reports it now."""
    return list(sched.stats().get("node_list", []))


def labels_of(node: dict[str, Any]) -> dict[str, str]:
    return dict((node.get("capabilities") or {}).get("labels") or {})


def node_with_instance(sched: Any, instance_id: str, state: str | None = None) -> Callable[[], dict[str, Any] | None]:
    """A predicate for ``wait_for``: the node advertising ``instance_id`` (in ``state``, if given)."""

    def find() -> dict[str, Any] | None:
        for node in registered_nodes(sched):
            if labels_of(node).get("autoscale.instance") == instance_id and (state is None or node["state"] == state):
                return node
        return None

    return find
