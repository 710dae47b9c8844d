"""One real server with the distributed plugin (embedded scheduler, one local node subprocess, fake
models) shared by the ``/api/v1`` tests of a module. Tests leave its node idle when they end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lama_cleaner.client import LamaCleanerClient
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_for

from .helpers import start_distributed_server


@pytest.fixture(scope="module")
def count_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the ``count`` fake model appends one line per execution (exactly-once evidence)."""
    return tmp_path_factory.mktemp("count") / "count.txt"


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, count_file: Path) -> Iterator[ServerProcess]:
    server = start_distributed_server(
        tmp_path_factory.mktemp("api-server"), env={"LAMA_TEST_COUNT_FILE": str(count_file)}
    )
    try:
        client = LamaCleanerClient(server.url)
        wait_for(lambda: any(n["state"] == "idle" for n in client.nodes()), 60, "the local node to join")
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(api_server: ServerProcess) -> Iterator[LamaCleanerClient]:
    with LamaCleanerClient(api_server.url, timeout=30) as client:
        yield client


def counted(count_file: Path) -> list[str]:
    """Markers the ``count`` model wrote, one per execution."""
    return count_file.read_text().split() if count_file.exists() else []


def idle_node(client: LamaCleanerClient) -> dict | None:
    nodes = client.nodes()
    return next((n for n in nodes if n["state"] == "idle" and not n.get("current_task")), None)
