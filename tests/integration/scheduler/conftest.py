"""Fixtures: a real scheduler thread (ephemeral ports, tmp journal) and scripted peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from lama_cleaner.plugins.distributed.scheduler.service import Scheduler
from tests.integration.scheduler.peers import Producer, ScriptedNode, make_config, resource_class_of


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def scheduler_factory(tmp_path) -> Iterator[Callable[..., Scheduler]]:
    started: list[Scheduler] = []

    def make(**dist: Any) -> Scheduler:
        sched = Scheduler(make_config(tmp_path, **dist), resource_class_of)
        sched.start()
        started.append(sched)
        return sched

    yield make
    for sched in started:
        sched.stop()
    for sched in started:
        assert sched.join(10), "scheduler thread did not stop"


@pytest.fixture
def peers(zctx) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(kind: str, sched: Scheduler, **kwargs: Any) -> Any:
        peer = ScriptedNode(zctx, sched, **kwargs) if kind == "node" else Producer(zctx, sched, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()
