"""Headless Chromium for the tests that open our pages (the 1.2.5 front end, ``/monitor``).

One place for the launch: Debian's ``/usr/bin/chromium`` through Playwright, flags that keep it quiet and
offline, and a loud skip (printed to stderr, not only in the skip reason) when the browser is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

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


def launched_chromium() -> Iterator[Any]:
    """Yield a launched Chromium (a Playwright ``Browser``) and close it afterwards; for module fixtures."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="LOUD: playwright is not installed")
    if not os.path.exists(CHROMIUM):
        loud_skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
