"""Fixtures of the monitor's integration tests."""

from __future__ import annotations

import pytest

from tests.support.browser import launched_chromium
from tests.support.server_process import free_port


@pytest.fixture
def unused_port_url() -> str:
    """An http:// URL on a loopback port nothing listens on (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}/"


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()
