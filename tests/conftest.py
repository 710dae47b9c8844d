"""Shared fixtures: real server subprocesses that are always cleaned up.

``server_factory`` starts a fresh server per test (for tests that change server state, such as a
model switch); ``shared_servers`` keeps one server per distinct argument list for the whole session
(for read-mostly tests), so the suite does not pay a start-up per test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.server_process import REPO_ROOT, ServerProcess


class ServerPool:
    """Servers keyed by their arguments; all stopped when the pool closes."""

    def __init__(self) -> None:
        self._servers: dict[tuple[object, ...], ServerProcess] = {}

    def get(self, *args: str, env: dict[str, str] | None = None, **kwargs: object) -> ServerProcess:
        key = (args, tuple(sorted((env or {}).items())), tuple(sorted(kwargs.items())))
        server = self._servers.get(key)
        if server is None or server.proc is None or server.proc.poll() is not None:
            server = ServerProcess(args, env=env, **kwargs).start()  # type: ignore[arg-type]
            self._servers[key] = server
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_servers() -> Iterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """``start(*args, env=None, model="cv2", device="cpu")`` -> a ready server, stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> ServerProcess:
        server = ServerProcess(args, env=env, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def classic_server(shared_servers: ServerPool) -> ServerProcess:
    """A plain classic-mode server (``--model cv2 --device cpu``) shared by read-mostly tests."""
    return shared_servers.get()
