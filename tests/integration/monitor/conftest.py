"""Fixtures of the monitor's integration tests."""

from __future__ import annotations

import os
import sys

import pytest

from tests.support.server_process import free_port


@pytest.fixture
def unused_port_url() -> str:
    """An http:// URL on a loopback port nothing listens on (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}/"


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def loud_skip(reason: str) -> None:
    print(f"\n*** BROWSER TEST SKIPPED: {reason} ***", file=sys.stderr, flush=True)
    pytest.skip(f"LOUD: {reason}")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="LOUD: playwright is not installed")
    if not os.path.exists(CHROMIUM):
        loud_skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
