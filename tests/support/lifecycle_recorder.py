"""Test plugin (``--plugins tests.support.lifecycle_recorder``): records the lifecycle hooks it sees.

Each ``startup``/``shutdown`` call appends ``<hook> <role>`` as one line to the file named by
``LAMA_TEST_LIFECYCLE_FILE`` (one ``O_APPEND`` write, so every process of a deployment may share the
file); with ``LAMA_TEST_LIFECYCLE_PID=1`` the line ends with the pid of the process, so a test can
tell which process of a deployment ran which role. With ``LAMA_TEST_LIFECYCLE_FAIL=startup`` its
``startup`` refuses with a ConfigError, the way a plugin refuses settings it cannot work with (with
``startup:<role>``, only in processes of that role, e.g. ``startup:node``). With
``LAMA_TEST_LIFECYCLE_HOLD=<path>`` a node's ``startup`` waits (up to a minute) until that file exists, and
swallows any exception meanwhile, the way start-up code with a broad ``except`` would (a model's
availability check): a test can then signal a node that is still starting.
"""

from __future__ import annotations

import os
import time

from lama_cleaner.config import ConfigError
from lama_cleaner.plugins.hookspecs import hookimpl


def record(line: str) -> None:
    path = os.environ.get("LAMA_TEST_LIFECYCLE_FILE")
    if not path:
        return
    if os.environ.get("LAMA_TEST_LIFECYCLE_PID"):
        line = f"{line} {os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@hookimpl
def startup(config, role):
    record(f"startup {role}")
    fail = os.environ.get("LAMA_TEST_LIFECYCLE_FAIL")
    if fail == "startup" or fail == f"startup:{role}":
        raise ConfigError("the lifecycle recorder refuses to start")
    hold = os.environ.get("LAMA_TEST_LIFECYCLE_HOLD")
    if hold and role == "node":
        deadline = time.monotonic() + 60
        while not os.path.exists(hold) and time.monotonic() < deadline:
            try:
                time.sleep(0.02)
            except Exception:  # noqa: BLE001, S110 - the point: start-up code that swallows what is raised in it
                pass


@hookimpl
def shutdown(config, role):
    record(f"shutdown {role}")
