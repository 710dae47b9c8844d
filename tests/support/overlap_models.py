"""Test-only models that record when their model call starts and ends, enabled with
``--plugins tests.support.overlap_models``; the classic-concurrency test reads the record.

- ``probe-cv2``: OpenCV's model itself (a subclass that adds only the record and a wait inside
  ``forward``), so it is thread-safe exactly when cv2 is.
- ``probe-serial``: the same, declared not thread-safe, as every model is by default.

Each call appends ``<name> start|end <time.monotonic()>`` to the file ``LAMA_TEST_PROBE_FILE``. The
``prompt`` field says how long the call lasts: ``wait=N`` holds it until N calls of this model have
started (a deadline of 15 s ends the wait, so serialised calls still finish), ``ms=M`` sleeps M ms.
"""

from __future__ import annotations

import os
import time
from typing import Any

from lama_cleaner.models.opencv import OpenCV2
from lama_cleaner.plugins.hookspecs import hookimpl


def _starts(path: str, name: str) -> int:
    with open(path) as fh:
        return sum(1 for line in fh if line.startswith(f"{name} start "))


class ProbeCV2(OpenCV2):
    name = "probe-cv2"

    def forward(self, image_rgb: Any, mask: Any, req: Any) -> Any:
        path = os.environ["LAMA_TEST_PROBE_FILE"]
        with open(path, "a") as fh:
            fh.write(f"{self.name} start {time.monotonic()}\n")
        options = dict(token.partition("=")[::2] for token in (req.prompt or "").split())
        if "wait" in options:
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and _starts(path, self.name) < int(options["wait"]):
                time.sleep(0.01)
        else:
            time.sleep(int(options.get("ms", "300")) / 1000.0)
        out = super().forward(image_rgb, mask, req)
        with open(path, "a") as fh:
            fh.write(f"{self.name} end {time.monotonic()}\n")
        return out


class ProbeSerial(ProbeCV2):
    name = "probe-serial"
    thread_safe = False


@hookimpl
def register_models(registry: Any) -> None:
    registry.register(ProbeCV2)
    registry.register(ProbeSerial)
